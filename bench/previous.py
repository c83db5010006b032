"""The served model against the one it replaced: `Segmenter.segment()` (size estimate and any
rescaling included) of both on the same images, and of the served model in one pass at its
training diameter (what segment() cost before the estimate), interleaved so load falls on all alike."""

from __future__ import annotations

import subprocess
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from bench.inprocess import summary, timed_once
from bench.server import ROOT
from nuclei.imageio import decode_image

# the last commit that served model 1.3.0, the one model 2.0 is to replace
PREVIOUS = {"version": "1.3.0", "commit": "27b0f54", "file": "models/nuclei-unet.int8.onnx"}


def checkout_previous(folder: Path) -> Path:
    """The previous INT8 model and its card, out of the git history into `folder`."""
    model = Path(PREVIOUS["file"])
    for path in (model, model.with_suffix(".json")):
        blob = subprocess.run(["git", "-C", str(ROOT), "show", f"{PREVIOUS['commit']}:{path}"], capture_output=True)
        if blob.returncode:  # e.g. a shallow clone: `git fetch --unshallow`
            raise SystemExit(f"bench: cannot read {path} at {PREVIOUS['commit']}: {blob.stderr.decode().strip()}")
        (folder / path.name).write_bytes(blob.stdout)
    return folder / model.name


def compare(served, previous, images, reps: int, budget_s: float) -> dict[str, Any]:
    """Per image size: p50 ms of each model's `segment()` and of the served one's single pass,
    and the medians of the per-call ratios served ÷ previous and served ÷ one pass."""
    result: dict[str, Any] = {"previous": previous.card.version, "served": served.card.version, "sizes": {}}
    for image in images:
        pixels = decode_image(image.data)
        calls = {"served": partial(served.segment, pixels), "previous": partial(previous.segment, pixels),
                 "one pass": partial(served.segment, pixels, diameter=served.card.nucleus_scale.diameter)}
        seconds: dict[str, list[float]] = {name: [] for name in calls}
        start = time.perf_counter()
        for n in range(reps + 1):  # the first round warms up
            if n > 2 and time.perf_counter() - start > budget_s:
                break
            for name, call in calls.items():
                seconds[name].append(timed_once(call))
        seconds = {name: s[1:] for name, s in seconds.items()}
        ratios = {f"ratio_{k}": round(float(np.median(np.divide(seconds["served"], seconds[k]))), 3)
                  for k in ("previous", "one pass")}
        result["sizes"][image.name if "×" in image.name else image.key] = {
            **{k: summary(s) for k, s in seconds.items()}, **ratios}
    return result
