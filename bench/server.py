"""A real `python -m app` process on loopback, for the benchmark, the soak script and the
process-level tests: one way to pick a port, start the server and wait for /ready. It gets
the service's defaults plus the `env` given (the shell's MODEL_PATH, TILE_SIZE… are dropped).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from app.config import Settings

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_ready(proc: subprocess.Popen, url: str, log_path: Path, timeout_s: float = 60.0,
                     poll_s: float = 0.05) -> None:
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


def server_env(env: Mapping[str, object] | None = None) -> dict[str, str]:
    """This process's environment without the service's settings, then `env` (names upper-cased)."""
    base = {k: v for k, v in os.environ.items() if k.lower() not in Settings.model_fields}
    return base | {k.upper(): str(v) for k, v in (env or {}).items()}


@dataclass
class Server:
    url: str
    proc: subprocess.Popen
    log_path: Path
    ready_s: float  # from spawning the process to its first 200 from /ready

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self, timeout_s: float = 30.0) -> int:
        """SIGTERM, as an orchestrator stops it; SIGKILL after `timeout_s`. The exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def start(env: Mapping[str, object] | None = None, *, log_path: Path, command: Sequence[str] | None = None,
          port: int | None = None, timeout_s: float = 120.0, poll_s: float = 0.01) -> Server:
    """`python -m app` (or `command`) on 127.0.0.1:`port` (a free one when None), ready when
    this returns; the caller stops it. Its output goes to `log_path`."""
    port = port or free_port()
    child_env = server_env(env) | {"HOST": "127.0.0.1", "PORT": str(port)}
    with log_path.open("ab") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(list(command or [sys.executable, "-m", "app"]), cwd=ROOT, env=child_env,
                                stdout=out, stderr=subprocess.STDOUT)
    server = Server(f"http://127.0.0.1:{port}", proc, log_path, 0.0)
    wait_until_ready(proc, server.url, log_path, timeout_s, poll_s)
    server.ready_s = time.perf_counter() - t0
    return server


@contextmanager
def serve(env: Mapping[str, object] | None = None, *, log_path: Path | None = None, **options: Any) -> Iterator[Server]:
    """`start`, stopped on exit; the log goes to a temporary file when `log_path` is None."""
    with tempfile.TemporaryDirectory(prefix="nuclei-server-") as tmp:
        server = start(env, log_path=Path(log_path or Path(tmp) / "server.log"), **options)
        try:
            yield server
        finally:
            server.stop()
