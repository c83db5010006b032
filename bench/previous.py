"""The served model against the one it replaced, side by side in one run: `Segmenter.segment()`
(post-processing and any rescaling included) on the same decoded images, the two models'
calls interleaved so that load on shared cores falls on both alike."""

from __future__ import annotations

import subprocess
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from bench.images import Image
from bench.inprocess import summary, timed_once
from bench.server import ROOT
from nuclei.imageio import decode_image
from nuclei.segmenter import Segmenter

# the last commit that served model 1.3.0, the one model 2.0 replaced
PREVIOUS = {"version": "1.3.0", "commit": "27b0f54", "file": "models/nuclei-unet.int8.onnx"}


def checkout_previous(folder: Path) -> Path:
    """The previous INT8 model and its card, out of the git history into `folder`."""
    for path in (PREVIOUS["file"], str(Path(PREVIOUS["file"]).with_suffix(".json"))):
        blob = subprocess.run(["git", "-C", str(ROOT), "show", f"{PREVIOUS['commit']}:{path}"],
                              capture_output=True, check=False)
        if blob.returncode:
            raise SystemExit(f"bench: cannot read {path} at commit {PREVIOUS['commit']} (a shallow clone? "
                             f"run `git fetch --unshallow`): {blob.stderr.decode().strip()}")
        (folder / Path(path).name).write_bytes(blob.stdout)
    return folder / Path(PREVIOUS["file"]).name


def compare(served: Segmenter, previous: Segmenter, images: list[Image], reps: int,
            budget_s: float) -> dict[str, Any]:
    """p50 ms of each model's `segment()` per image size, and the served one's cost as the
    median of the per-pair ratios (each pair ran back to back, under the same load)."""
    result: dict[str, Any] = {"previous": previous.card.version, "served": served.card.version, "sizes": {}}
    for image in images:
        pixels = decode_image(image.data)
        calls = {name: partial(model.segment, pixels) for name, model in (("served", served), ("previous", previous))}
        for call in calls.values():
            call()  # warm-up
        seconds: dict[str, list[float]] = {name: [] for name in calls}
        start = time.perf_counter()
        while len(seconds["served"]) < reps and (len(seconds["served"]) < 2 or time.perf_counter() - start < budget_s):
            for name, call in calls.items():
                seconds[name].append(timed_once(call))
        ratios = np.divide(seconds["served"], seconds["previous"])
        result["sizes"][image.key] = {**{name: summary(s) for name, s in seconds.items()},
                                      "ratio": round(float(np.median(ratios)), 3)}
    return result
