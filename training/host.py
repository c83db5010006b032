"""The CPU a leg runs on: its vector flags go into every leg's record (speeds differ 5× between
this project's hosts), and they decide the precision `--precision auto` trains in."""

from __future__ import annotations

import platform
from pathlib import Path

VECTOR_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    try:
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def describe(flags: set[str] | None = None) -> str:
    """'x86_64 avx2 avx512f avx512_vnni avx512_bf16': the flags that change speed or INT8 scores."""
    flags = cpu_flags() if flags is None else flags
    return " ".join([platform.machine(), *(f for f in VECTOR_FLAGS if f in flags)])


def auto_precision(flags: set[str] | None = None) -> str:
    """bfloat16 only where the CPU computes it natively: measured 1.5× float32's speed with
    avx512_bf16, 8× slower without (docs/training.md)."""
    flags = cpu_flags() if flags is None else flags
    return "mixed_bfloat16" if {"avx512_bf16", "amx_bf16"} & flags else "float32"
