"""A `python -m app` process on loopback, for the benchmark, the soak script and the
process-level tests: one way to pick a port and to wait for /ready."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_ready(
    proc: subprocess.Popen, url: str, log_path: Path, timeout_s: float = 60.0, poll_s: float = 0.05
) -> None:
    """Return at the first 200 from /ready; raise RuntimeError with the server's log if the
    process exits first or `timeout_s` passes (the process is then killed)."""
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=1.0, trust_env=False) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}:\n{log_path.read_text()}")
            try:
                if client.get(f"{url}/ready").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(poll_s)
    proc.kill()
    proc.wait()
    raise RuntimeError(f"server not ready after {timeout_s} s:\n{log_path.read_text()}")
