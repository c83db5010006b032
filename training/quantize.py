"""Float32 ONNX → static INT8 ONNX (onnxruntime's quantisation tools), the model the service
runs by default: on this CPU's VNNI/AMX units it is about 2.5× faster at the same score.

Calibration sees normalised crops of training images only, never the validation split, so
the INT8 model is scored on images it has not seen in any form.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from nuclei import card as cards
from nuclei.card import INT8_INFERENCE, ModelCard, sha256_file
from nuclei.normalize import normalize
from nuclei.tiling import pad_to_multiple
from training.data import Dataset

log = logging.getLogger("training")
SETTINGS = {
    "quant_format": "QDQ",
    "per_channel": True,
    "activation_type": "QUInt8",
    "weight_type": "QInt8",
    "calibrate_method": "MinMax",
}


def calibration_batches(
    data: str, exclude: set[str], count: int, crop: int, seed: int = 0
) -> tuple[list[np.ndarray], str]:
    """`count` normalised crops (1×crop×crop×3 float32) of training images."""
    dataset = Dataset(data)
    pool = [i for i in dataset.ids if i not in exclude]
    batches = calibration_crops(lambda k: dataset.load(pool[k]).image, len(pool), count, crop, seed)
    note = f"{len(batches)} training images (validation ids excluded), one {crop}×{crop} crop each, seed {seed}"
    return batches, note


def calibration_crops(image: Callable[[int], np.ndarray], n: int, count: int, crop: int,
                      seed: int = 0) -> list[np.ndarray]:
    """One random crop of each of `count` images drawn from `n` (`image(k)` reads the k-th,
    only for those drawn)."""
    rng = np.random.default_rng(seed)
    batches = []
    for k in sorted(rng.choice(n, size=min(count, n), replace=False)):
        x = pad_to_multiple(normalize(image(int(k))), crop)
        y0 = int(rng.integers(0, x.shape[0] - crop + 1))
        x0 = int(rng.integers(0, x.shape[1] - crop + 1))
        batches.append(np.ascontiguousarray(x[None, y0 : y0 + crop, x0 : x0 + crop]))
    return batches


def quantize_int8(model: Path, out: Path, batches: list[np.ndarray], input_name: str = "image",
                  reduce_range: bool = False) -> float:
    """Static INT8 with SETTINGS; returns the seconds it took. `reduce_range`: 7-bit weights,
    so that x86 CPUs without VNNI (whose U8S8 kernels add pairs of products in 16 bits,
    VPMADDUBSW) cannot saturate (onnxruntime's quantisation guide)."""
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
            calibrate_method=CalibrationMethod.MinMax, reduce_range=reduce_range,
        )
    finally:
        pre.unlink(missing_ok=True)
    return time.perf_counter() - t0


def derived_card(source: Path, out: Path, extra: dict[str, Any]) -> ModelCard:
    """The source model's card for a file made from it: same weights' story, new file and
    sha256, its own metrics (filled in by `evaluate --update-card`)."""
    return cards.load(source).model_copy(update={
        "name": out.stem, "file": out.name, "sha256": sha256_file(out),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "derived": {"from": source.name, "from_sha256": sha256_file(source), **extra},
        "metrics": {},
    })


def quantize(model: Path, out: Path, data: str, images: int = 32, crop: int = 256,
             reduce_range: bool = False) -> ModelCard:
    card = cards.load(model)
    batches, note = calibration_batches(data, set(card.training.validation_ids), images, crop)
    return write_int8(model, out, batches, note, reduce_range)


def write_int8(model: Path, out: Path, batches: list[np.ndarray], note: str, reduce_range: bool) -> ModelCard:
    """The INT8 model of `model`, calibrated on `batches` (`note` says on what), and its card."""
    card = cards.load(model)
    seconds = quantize_int8(model, out, batches, card.input.name, reduce_range)
    int8 = derived_card(model, out, {
        "how": "onnxruntime.quantization.quantize_static",
        "settings": {**SETTINGS, "reduce_range": reduce_range},
        "calibration": note, "seconds": round(seconds, 1),
    })
    int8.inference = card.inference.model_copy(update=INT8_INFERENCE.model_dump(exclude_unset=True))
    cards.save(int8, out)
    log.info("quantised %s → %s (%.1f MB) in %.1f s", model.name, out, out.stat().st_size / 1e6, seconds)
    return int8
