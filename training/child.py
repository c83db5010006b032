"""The fine-tuned model itself: `training.train`'s loop run on a lab's images from the parent's
Keras weights, then the same export (float32 ONNX, parity with Keras) and quantisation (INT8,
the parent's settings) as the served model, with the parent's card carried over: its
architecture, nucleus scale and thresholds (unless tuned on the fine-tune's training images).

TensorFlow loads here, so `training.finetune` imports this module only once its input is known good.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import keras

from nuclei import card as cards
from nuclei.card import ModelCard, sha256_file
from nuclei.postprocess import OUTPUT_CHANNELS
from nuclei.segmenter import Segmenter
from training import checkpoint
from training.data import Sample
from training.export import checked_onnx, distinct_shapes, export_record
from training.model import build_unet, stride
from training.quantize import calibration_crops, write_int8
from training.train import TrainConfig, logged_to, train
from training.tune import tune_on

log = logging.getLogger("training")
EPOCH_STEPS = 25  # steps between held-out loss lines and checkpoints
OPEN_ENDED_EPOCHS = 10_000  # without --steps, the time limit ends the run
CALIBRATION_IMAGES, CALIBRATION_CROP = 32, 256  # `quantize`'s defaults


@dataclass(frozen=True)
class Recipe:
    """How the child is trained: `train`'s settings that a fine-tune exposes."""

    weights: Path  # the parent's Keras weights
    filters: tuple[int, ...]
    outputs: int
    run_dir: Path
    minutes: float
    steps: int  # 0: as many as the minutes allow
    batch_size: int
    learning_rate: float
    augment: str
    precision: str
    seed: int

    def config(self, data: str) -> TrainConfig:
        """With `steps`, the learning rate decays along the cosine to `train`'s floor by the last
        step; without, it is constant: the run's length is the clock's, so no schedule knows its end."""
        from training.augment import AUGMENT_PRESETS

        per_epoch = min(self.steps, EPOCH_STEPS) if self.steps else EPOCH_STEPS
        epochs = math.ceil(self.steps / per_epoch) if self.steps else OPEN_ENDED_EPOCHS
        return TrainConfig(
            data=data, run_dir=str(self.run_dir), epochs=epochs, steps_per_epoch=per_epoch,
            batch_size=self.batch_size, learning_rate=self.learning_rate, seed=self.seed, patience=epochs,
            time_limit_minutes=self.minutes, init_weights=str(self.weights), filters=self.filters,
            precision=self.precision, augment=AUGMENT_PRESETS[self.augment], outputs=self.outputs,
            lr_floor=TrainConfig.lr_floor if self.steps else 1.0,
            checkpoint=str(self.run_dir / "checkpoint.npz"), checkpoint_minutes=2.0)


def fit(recipe: Recipe, data: str, train_set: list[Sample], held_out: list[Sample]) -> tuple[keras.Model, dict]:
    """Train afresh (an earlier fine-tune's checkpoint is not resumed); the weights the run
    ended with, as a float32 model, and the run's record (steps, minutes)."""
    cfg = recipe.config(data)
    Path(cfg.checkpoint).unlink(missing_ok=True)
    with logged_to(recipe.run_dir):
        train(cfg, (train_set, held_out))
    state, weights, _ = checkpoint.load(Path(cfg.checkpoint))
    keras.mixed_precision.set_global_policy("float32")  # whatever the run trained in, ONNX is float32
    model = build_unet(recipe.filters, outputs=recipe.outputs)
    model.set_weights(weights)
    return model, {"steps": state.step, "minutes": round(sum(leg["minutes"] for leg in state.legs), 2)}


def export_child(model: keras.Model, parent: ModelCard, out: Path, version: str,
                 modalities: list[str] | None, parity_from: list[Sample], views: int | None = None) -> ModelCard:
    """`out` (float32 ONNX, parity-checked), its Keras weights beside it, and a card that is the
    parent's with this file's identity (scores reset: they were the parent's), averaging
    `views` mirrored views at inference when given."""
    multiple = stride(tuple(parent.architecture["filters"]))
    diff, rewritten = checked_onnx(model, out, distinct_shapes(s.image for s in parity_from), multiple)
    model.save_weights(out.with_name(f"{out.stem}.weights.h5"))
    output = parent.output.model_copy(update={"channels": {
        str(k): v for k, v in list(OUTPUT_CHANNELS.items())[: model.output_shape[-1]]}})
    card = parent.model_copy(update={
        "output": output,
        "name": out.stem, "version": version, "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "file": out.name, "sha256": sha256_file(out),
        "architecture": {**parent.architecture, "keras_weights": f"{out.stem}.weights.h5"},
        "export": export_record(diff, rewritten), "metrics": {}, "derived": None, "finetune": None,
        "modalities": modalities if modalities is not None else parent.modalities,
        "inference": parent.inference.model_copy(update={"views": views}) if views else parent.inference,
    })
    cards.save(card, out)
    log.info("exported %s, parity %.2e", out, diff)
    return card


def quantize_child(model: Path, out: Path, train_set: list[Sample], reduce_range: bool) -> ModelCard:
    """The INT8 model, calibrated on crops of the fine-tune's training images."""
    batches = calibration_crops(lambda k: train_set[k].image, len(train_set), CALIBRATION_IMAGES, CALIBRATION_CROP)
    note = f"{len(batches)} of the fine-tune's training images, one {CALIBRATION_CROP}² crop each, seed 0"
    return write_int8(model, out, batches, note, reduce_range)


def tune_child(model: Path, images: list[Sample], which: str = "training images") -> None:
    """Thresholds chosen on the training images, or on the fold kept for them (the held-out
    ones only ever score)."""
    tune_on(Segmenter(model), images, f"the fine-tune's {len(images)} {which}")


def release() -> None:
    """Free TensorFlow's graphs before the ONNX models are scored."""
    keras.backend.clear_session()
