"""Best checkpoint → ONNX (dynamic batch, height and width) + model card, with a parity
check on real images: the export fails loudly rather than ship a model that drifted."""

from __future__ import annotations

import json
import logging
import os
import platform
import shutil
from collections.abc import Iterable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from nuclei import card as cards
from nuclei import normalize as normalization
from nuclei.card import Inference, ModelCard, sha256_file
from nuclei.postprocess import OUTPUT_CHANNELS, Thresholds
from nuclei.scale import DEFAULT_SCALE
from nuclei.tiling import pad_to_multiple
from training.data import Dataset
from training.model import build_unet, stride
from training.onnx_graph import simplify_upsampling

log = logging.getLogger("training")
PARITY_TOLERANCE = 1e-4
OPSET = 17
DATA_DESCRIPTION = (
    "2018 Data Science Bowl stage 1 training set (BBBC038, CC0) with community mask fixes: "
    "604 images of 256×256 to 1040×1388, ~84% fluorescence, the rest bright-field and "
    "stained tissue; one mask PNG per nucleus."
)


class ExportError(RuntimeError):
    """The ONNX graph does not reproduce the Keras model."""


def load_keras(run_dir: Path):
    import keras

    keras.mixed_precision.set_global_policy("float32")  # whatever a leg trained in, ONNX is float32
    config = json.loads((run_dir / "config.json").read_text())
    model = build_unet(tuple(config["filters"]))
    model.load_weights(run_dir / "best.weights.h5")
    return model, config


def to_onnx(model, out: Path) -> int:
    """Convert, then simplify the upsampling (`training.onnx_graph`); returns how many
    transposed convolutions were rewritten."""
    import onnx
    import tensorflow as tf
    import tf2onnx

    spec = tf.TensorSpec((None, None, None, normalization.CHANNELS), tf.float32, name="image")
    fn = tf.function(lambda image: model(image, training=False), input_signature=[spec])
    proto, _ = tf2onnx.convert.from_function(fn, input_signature=[spec], opset=OPSET)
    proto, rewritten = simplify_upsampling(proto)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(out))
    return rewritten


def parity(model, onnx_path: Path, images: list[np.ndarray], multiple: int) -> float:
    """Largest |Keras − ONNX| over real, normalised, stride-padded images."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    worst = 0.0
    for image in images:
        x = pad_to_multiple(normalization.normalize(image), multiple)[None]
        expected = np.asarray(model(x, training=False))
        got = session.run(None, {name: x})[0]
        worst = max(worst, float(np.abs(expected - got).max()))
    return worst


def parity_images(data: str, ids: list[str], count: int = 3) -> list[np.ndarray]:
    """A few validation images of different shapes, so H/W mix-ups cannot pass."""
    dataset = Dataset(data)
    return distinct_shapes((dataset.load(i).image for i in ids), count)


def distinct_shapes(images: Iterable[np.ndarray], count: int = 3) -> list[np.ndarray]:
    """The first image of each shape, up to `count` shapes (read lazily: a generator stops early)."""
    chosen: dict[tuple[int, int], np.ndarray] = {}
    for image in images:
        chosen.setdefault(image.shape[:2], image)
        if len(chosen) == count:
            break
    return list(chosen.values())


def checked_onnx(model, out: Path, images: list[np.ndarray], multiple: int) -> tuple[float, int]:
    """`out` written only if the ONNX graph reproduces Keras on `images`: (largest
    difference, transposed convolutions rewritten); ExportError otherwise."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".onnx.tmp")
    rewritten = to_onnx(model, tmp)
    diff = parity(model, tmp, images, multiple)
    if diff > PARITY_TOLERANCE:
        tmp.unlink()
        raise ExportError(f"ONNX differs from Keras by {diff:.2e} > {PARITY_TOLERANCE:.0e}")
    os.replace(tmp, out)
    return diff, rewritten


def export(run_dir: Path, out: Path, data: str, version: str) -> ModelCard:
    model, config = load_keras(run_dir)
    multiple = stride(tuple(config["filters"]))
    diff, rewritten = checked_onnx(model, out, parity_images(data, config["val_ids"]), multiple)
    model.save_weights(out.parent / f"{out.stem}.weights.h5")  # weights only, no optimiser state
    for name, suffix in (("curves.png", "curves.png"), ("history.csv", "history.csv")):
        if (run_dir / name).exists():
            shutil.copyfile(run_dir / name, out.parent / f"{out.stem}.{suffix}")
    card = build_card(out, config, version, export_record(diff, rewritten))
    if cards.card_path(out).exists():  # keep evaluation results of the same weights
        previous = cards.parse(cards.card_path(out))
        if previous.sha256 == card.sha256:
            card.metrics = previous.metrics
    cards.save(card, out)
    log.info("exported %s (%.1f MB), parity %.2e", out, out.stat().st_size / 1e6, diff)
    return card


def export_record(diff: float, rewritten: int) -> dict[str, Any]:
    """The card's `export`: how the ONNX file was made and how close it is to Keras."""
    import keras
    import tensorflow as tf
    import tf2onnx

    return {
        "opset": OPSET, "parity_max_abs_diff": diff, "tensorflow": tf.__version__,
        "keras": keras.__version__, "tf2onnx": tf2onnx.__version__, "python": platform.python_version(),
        "rewrites": f"{rewritten} × 2×2/stride-2 ConvTranspose → 1×1 Conv + DepthToSpace",
    }


def build_card(onnx_path: Path, config: dict[str, Any], version: str, export: dict[str, Any]) -> ModelCard:
    history = onnx_path.parent / f"{onnx_path.stem}.history.csv"
    return ModelCard.model_validate({
        "name": onnx_path.stem,
        "version": version,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "file": onnx_path.name,
        "sha256": sha256_file(onnx_path),
        "architecture": {
            "type": "U-Net", "filters": list(config["filters"]),
            "blocks": "2 × (3×3 conv, batch norm, ReLU); 2×2 max-pool down; 2×2 transposed conv up",
            "keras_weights": f"{onnx_path.stem}.weights.h5",
        },
        "input": {
            "name": "image", "layout": "NHWC", "dtype": "float32",
            "channels": normalization.CHANNELS, "stride": stride(tuple(config["filters"])),
            "normalization": normalization.DESCRIPTION,
        },
        "output": {
            "layout": "NHWC", "activation": "sigmoid",
            "channels": {str(k): v for k, v in OUTPUT_CHANNELS.items()},
        },
        "inference": Inference().model_dump(by_alias=True),
        "postprocess": asdict(Thresholds()),
        "training": {
            "data": DATA_DESCRIPTION,
            "split": f"seeded hash split, seed {config['seed']}, "
                     f"validation fraction {config['val_fraction']}",
            "train_images": len(config["train_ids"]),
            "validation_ids": config["val_ids"],
            "settings": {k: config.get(k) for k in (
                "epochs", "steps_per_epoch", "batch_size", "learning_rate", "patience",
                "seed", "augment", "hard_report", "hard_fraction", "hard_weight", "init_weights",
                "precision", "time_limit_minutes")},
            "history": history.name if history.exists() else None,
        },
        "export": export,
        "metrics": {},
        "scale": trained_scale(config),
    })


def trained_scale(config: dict[str, Any]) -> dict[str, Any] | None:
    """A model trained at one nucleus size (`--augment scaled`), or within a band of sizes
    (`banded`, `wide`), sees every image brought to it: its trained range is that size or band
    times the crops' scale jitter, and a band's top is where large nuclei are shrunk to (on
    model 3.3's 80 tuning images: DSB2018 0.6366 at 36.6 px, 0.6362 at 40.3, 0.6342 at 22.9).
    Others get theirs from `training diameters`."""
    augment = config["augment"]
    diameter, band = augment.get("to_diameter"), augment.get("band") or (0.0, 0.0)
    if not diameter and not any(band):
        return None
    low, high = augment["scale_range"]
    smallest, largest = band if any(band) else (diameter, diameter)
    what = (f"every image at a median nucleus diameter of {diameter} px" if diameter else
            f"every image's median nucleus diameter brought within {smallest}-{largest} px")
    return {"diameter": diameter or DEFAULT_SCALE.diameter, "low": round(smallest * low, 1),
            "high": round(largest * high, 1),
            # large nuclei are shrunk to the band's top, the largest size learnt at its own pixels
            "down_to": largest if any(band) else None,
            "description": f"trained with {what}, crops scaled {low}-{high}×: "
                           "images whose nuclei fall outside are resized to it"}
