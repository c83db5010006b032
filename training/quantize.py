"""Float32 ONNX → static INT8 ONNX (onnxruntime's quantisation tools), the model the service
runs by default: on this CPU's VNNI/AMX units it is about 2.5× faster at the same score.

Calibration sees normalised crops of training images only, never the validation split, so
the INT8 model is scored on images it has not seen in any form.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from app.normalize import normalize
from app.segmenter import card_path, sha256_file
from app.tiling import pad_to_multiple
from training.data import Dataset

log = logging.getLogger("training")
SETTINGS = {
    "quant_format": "QDQ",
    "per_channel": True,
    "activation_type": "QUInt8",
    "weight_type": "QInt8",
    "calibrate_method": "MinMax",
}
# One tile covers a 1024×1024 image: fewer, larger tiles do less overlap work, and the INT8
# model's activations at 1024² still keep the server under 500 MB (bench/results).
INT8_TILE = 1024


def calibration_batches(
    data: str, exclude: set[str], count: int, crop: int, seed: int = 0
) -> tuple[list[np.ndarray], str]:
    """`count` normalised crops (1×crop×crop×3 float32) of training images."""
    dataset = Dataset(data)
    pool = [i for i in dataset.ids if i not in exclude]
    rng = np.random.default_rng(seed)
    batches = []
    for k in sorted(rng.choice(len(pool), size=min(count, len(pool)), replace=False)):
        x = pad_to_multiple(normalize(dataset.load(pool[int(k)]).image), crop)
        y0 = int(rng.integers(0, x.shape[0] - crop + 1))
        x0 = int(rng.integers(0, x.shape[1] - crop + 1))
        batches.append(np.ascontiguousarray(x[None, y0 : y0 + crop, x0 : x0 + crop]))
    note = f"{len(batches)} training images (validation ids excluded), one {crop}×{crop} crop each, seed {seed}"
    return batches, note


def quantize_int8(model: Path, out: Path, batches: list[np.ndarray], input_name: str = "image") -> float:
    """Static INT8 with SETTINGS; returns the seconds it took."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(batches)

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self.items, None)
            return None if batch is None else {input_name: batch}

    t0 = time.perf_counter()
    pre = out.with_name(out.stem + ".pre.onnx")
    try:
        quant_pre_process(str(model), str(pre), skip_symbolic_shape=True)
        quantize_static(
            str(pre), str(out), Reader(),
            quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )
    finally:
        pre.unlink(missing_ok=True)
    return time.perf_counter() - t0


def derived_card(source: Path, out: Path, extra: dict[str, Any]) -> dict[str, Any]:
    """The source model's card for a file made from it: same weights' story, new file and
    sha256, its own metrics (filled in by `evaluate --update-card`)."""
    card = json.loads(card_path(source).read_text())
    card["name"] = out.stem
    card["file"] = out.name
    card["sha256"] = sha256_file(out)
    card["created"] = datetime.now(UTC).isoformat(timespec="seconds")
    card["derived"] = {"from": source.name, "from_sha256": sha256_file(source), **extra}
    card["metrics"] = {}
    return card


def quantize(model: Path, out: Path, data: str, images: int = 32, crop: int = 256) -> dict[str, Any]:
    card = json.loads(card_path(model).read_text())
    exclude = set(card["training"]["validation_ids"])
    batches, note = calibration_batches(data, exclude, images, crop)
    seconds = quantize_int8(model, out, batches, card["input"]["name"])
    int8 = derived_card(model, out, {
        "how": "onnxruntime.quantization.quantize_static", "settings": SETTINGS,
        "calibration": note, "seconds": round(seconds, 1),
    })
    int8["inference"] = {**card.get("inference", {}), "tile": INT8_TILE, "batch_size": 1}
    card_path(out).write_text(json.dumps(int8, indent=2) + "\n")
    log.info("quantised %s → %s (%.1f MB) in %.1f s", model.name, out, out.stat().st_size / 1e6, seconds)
    return int8
