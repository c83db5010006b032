"""What the kernel says about a process, read from /proc: the one reader of memory (MB, 2**20
bytes) and CPU time for the benchmark, the soak script and the tests. A process that has gone
reads as 0, so a caller sampling a server that has just exited gets a number, not an exception.
"""

from __future__ import annotations

import os
from pathlib import Path


def _status_kb(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key == field:
                return int(rest.split()[0])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def descendants(pid: int) -> list[int]:
    """Children, grandchildren… of `pid` (every thread's children list, Linux ≥ 3.5)."""
    found: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            for child in map(int, (task / "children").read_text().split()):
                found += [child, *descendants(child)]
    except (FileNotFoundError, ProcessLookupError):
        pass
    return found


def _sum_mb(pid: int, field: str, children: bool) -> float:
    pids = [pid, *descendants(pid)] if children else [pid]
    return sum(_status_kb(p, field) for p in pids) / 1024


def rss_mb(pid: int, children: bool = False) -> float:
    """Resident memory now (VmRSS); with `children`, the sum over the process tree."""
    return _sum_mb(pid, "VmRSS", children)


def peak_rss_mb(pid: int, children: bool = False) -> float:
    """Peak resident memory (VmHWM); with `children`, the sum of each process's peak, an upper
    bound: the peaks need not have come at the same moment."""
    return _sum_mb(pid, "VmHWM", children)


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of all the process's threads."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def reset_peak(pid: int) -> bool:
    """Set VmHWM back to the current RSS (Linux ≥ 4.0), so the next peak is the next load's own."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False
