"""The napari tests need an X display with OpenGL (napari draws with vispy): the machine's own,
or an Xvfb started here for the session, so `pytest` runs them headless anywhere Xvfb is
installed (`make test` installs it). And one exit-time clash to step around (below)."""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

APT = ("xvfb xauth libxkbcommon-x11-0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0 "
       "libxcb-render-util0 libxcb-xinerama0 libxcb-xinput0 libxcb-xfixes0 libxcb-shape0 "
       "libxcb-cursor0 libegl1 libgl1")
SESSION = pytest.StashKey[pytest.Session]()


@pytest.fixture(scope="session", autouse=True)
def display() -> Iterator[str]:
    """$DISPLAY if there is one, else a private Xvfb (its number chosen by Xvfb itself)."""
    if os.environ.get("DISPLAY"):
        yield os.environ["DISPLAY"]
        return
    if not shutil.which("Xvfb"):
        pytest.fail(f"no X display and no Xvfb: sudo apt-get install -y {APT}", pytrace=False)
    xvfb = subprocess.Popen(["Xvfb", "-displayfd", "1", "-screen", "0", "1600x1000x24", "-nolisten", "tcp"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, preexec_fn=_die_with_parent)
    number = xvfb.stdout.readline().decode().strip()  # written once the server accepts clients
    if not number:
        pytest.fail(f"Xvfb did not start (exit {xvfb.wait()})", pytrace=False)
    os.environ["DISPLAY"] = f":{number}"
    os.environ.pop("QT_QPA_PLATFORM", None)  # offscreen has no OpenGL for napari's canvas
    yield os.environ["DISPLAY"]


def _die_with_parent() -> None:
    """Xvfb ends when pytest does, after Qt let go of it: stopped earlier, it takes Qt down
    (and pytest's exit status) with it at interpreter shutdown."""
    ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def pytest_sessionfinish(session: pytest.Session) -> None:
    session.config.stash[SESSION] = session


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """TensorFlow bundles its own LLVM, and Mesa's software OpenGL, which napari's canvas loads
    under Xvfb, links libLLVM: in one process their option registries are freed twice at exit
    (`free(): invalid pointer`, SIGABRT after every test passed). When both were loaded, leave
    once pytest is done, without the C++ destructors, with pytest's own exit status."""
    if "tensorflow" in sys.modules and "libLLVM" in Path("/proc/self/maps").read_text():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(int(config.stash[SESSION].exitstatus) if SESSION in config.stash else 1)
