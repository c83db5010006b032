"""Fit the U-Net on random crops, checkpointing every epoch so a cut-off run resumes."""

from __future__ import annotations

import csv
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import keras
import numpy as np

from nuclei.normalize import normalize
from training.augment import AugmentConfig, is_rare_style, training_pair, validation_pair
from training.data import Dataset, split_ids
from training.model import build_unet, warm_start

log = logging.getLogger("training")


@dataclass
class TrainConfig:
    data: str
    run_dir: str = "runs/unet"
    epochs: int = 50
    steps_per_epoch: int = 100
    batch_size: int = 8
    learning_rate: float = 1e-3
    val_fraction: float = 0.1
    seed: int = 2018
    patience: int = 10
    time_limit_minutes: float = 0.0  # 0: no limit
    max_images: int = 0  # 0: all; a few for a smoke run
    init_weights: str = ""  # warm restart: earlier weights, fresh schedule
    hard_report: str = ""  # an `evaluate --report` CSV over training images; "" : off
    hard_fraction: float = 0.2  # the worst-segmented share of that report...
    hard_weight: float = 3.0  # ...is drawn this many times as often
    filters: tuple[int, ...] = (16, 32, 64, 128, 256)
    precision: str = "float32"  # or "mixed_bfloat16" (keras mixed precision policy)
    augment: AugmentConfig = field(default_factory=AugmentConfig)


# foreground, boundary, contact: contact pixels are few but decide every merge, so they
# weigh double (the DSB2018 winners weighted their contact map up the same way)
CHANNEL_WEIGHTS = (1.0, 1.0, 2.0)


@keras.saving.register_keras_serializable(package="nuclei")
def bce_dice_loss(y_true, y_pred):
    """Per channel: binary cross-entropy + (1 - soft Dice), a weighted mean over channels;
    Dice keeps the thin boundary and contact channels from being drowned by the background."""
    ops = keras.ops
    bce = ops.mean(keras.losses.binary_crossentropy(y_true[..., None], y_pred[..., None]), axis=(1, 2))
    inter = ops.sum(y_true * y_pred, axis=(1, 2))
    total = ops.sum(y_true, axis=(1, 2)) + ops.sum(y_pred, axis=(1, 2))
    dice = (2.0 * inter + 1.0) / (total + 1.0)
    weights = np.asarray(CHANNEL_WEIGHTS[: y_true.shape[-1]], np.float32)
    return ops.sum((bce + 1.0 - dice) * weights, axis=-1) / float(weights.sum())


class CropSequence(keras.utils.PyDataset):
    """Endless random crops; an 'epoch' is just a fixed number of steps."""

    def __init__(self, images, labels, weights, cfg: TrainConfig, **kwargs):
        super().__init__(**kwargs)
        self.images, self.labels, self.cfg = images, labels, cfg
        self.p = np.asarray(weights, np.float64) / np.sum(weights)
        self.epoch_seed = cfg.seed

    def __len__(self) -> int:
        return self.cfg.steps_per_epoch

    def __getitem__(self, index: int):
        rng = np.random.default_rng([self.epoch_seed, index])
        picks = rng.choice(len(self.images), size=self.cfg.batch_size, p=self.p)
        pairs = [training_pair(self.images[i], self.labels[i], self.cfg.augment, rng) for i in picks]
        return np.stack([x for x, _ in pairs]), np.stack([y for _, y in pairs])

    def on_epoch_end(self) -> None:
        self.epoch_seed += 1


class TimeLimit(keras.callbacks.Callback):
    """Stop after the epoch that crosses the time budget, keeping the best checkpoint."""

    def __init__(self, minutes: float):
        super().__init__()
        self.deadline = time.monotonic() + minutes * 60 if minutes > 0 else None

    def on_epoch_end(self, epoch, logs=None):
        if self.deadline is not None and time.monotonic() > self.deadline:
            log.info("time limit reached after epoch %d: stopping", epoch + 1)
            self.model.stop_training = True


class EpochLog(keras.callbacks.Callback):
    """One line per epoch in the run log, and the resume point on disk."""

    def __init__(self, state_path: Path):
        super().__init__()
        self.state_path = state_path
        self.started = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        log.info(
            "epoch %d loss %.4f val_loss %.4f (%.0f s)",
            epoch + 1, logs.get("loss", float("nan")), logs.get("val_loss", float("nan")),
            time.monotonic() - self.started,
        )
        self.state_path.write_text(json.dumps({"completed_epochs": epoch + 1}))


def load_split(cfg: TrainConfig):
    """Normalised images and labels for both halves of the seeded split."""
    dataset = Dataset(cfg.data)
    ids = dataset.ids[: cfg.max_images] if cfg.max_images else dataset.ids
    train_ids, val_ids = split_ids(ids, cfg.val_fraction, cfg.seed)
    train, val = [dataset.load(i) for i in train_ids], [dataset.load(i) for i in val_ids]
    return train, val


def hardest(report: Path, fraction: float, among: set[str]) -> set[str]:
    """The images the current model segments worst (lowest foreground IoU in an `evaluate
    --report` CSV), so a fine-tuning run can draw them more often. Only ids in `among`
    count, so validation images never steer training."""
    with open(report, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["image_id"] in among]
    rows.sort(key=lambda r: float(r["model_foreground_iou"]))
    return {r["image_id"] for r in rows[: round(len(rows) * fraction)]}


def sampling_weights(train_set, cfg: TrainConfig) -> list[float]:
    """Relative odds of each training image being drawn for a crop."""
    weights = [cfg.augment.rare_weight if is_rare_style(s.image) else 1.0 for s in train_set]
    if cfg.hard_report:
        hard = hardest(Path(cfg.hard_report), cfg.hard_fraction, {s.image_id for s in train_set})
        log.info("drawing %d hard images %.1f× as often", len(hard), cfg.hard_weight)
        weights = [w * (cfg.hard_weight if s.image_id in hard else 1.0)
                   for w, s in zip(weights, train_set, strict=True)]
    return weights


def train(cfg: TrainConfig) -> Path:
    """Train (or resume) in cfg.run_dir; returns the best weights' path."""
    run_dir = Path(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    best_path, last_path = run_dir / "best.weights.h5", run_dir / "last.keras"
    state_path = run_dir / "state.json"
    keras.utils.set_random_seed(cfg.seed)
    keras.mixed_precision.set_global_policy(cfg.precision)

    t0 = time.monotonic()
    train_set, val_set = load_split(cfg)
    log.info("loaded %d training and %d validation images in %.0f s",
             len(train_set), len(val_set), time.monotonic() - t0)
    images = [normalize(s.image) for s in train_set]
    weights = sampling_weights(train_set, cfg)
    val_pairs = [validation_pair(normalize(s.image), s.labels, cfg.augment.crop) for s in val_set]
    val_x = np.stack([x for x, _ in val_pairs])
    val_y = np.stack([y for _, y in val_pairs])
    (run_dir / "config.json").write_text(json.dumps(
        {**asdict(cfg), "train_ids": [s.image_id for s in train_set],
         "val_ids": [s.image_id for s in val_set]}, indent=1))

    initial_epoch = 0
    if last_path.exists() and state_path.exists():
        initial_epoch = json.loads(state_path.read_text())["completed_epochs"]
        model = keras.models.load_model(last_path)
        log.info("resuming from %s after epoch %d", last_path, initial_epoch)
    else:
        model = build_unet(tuple(cfg.filters))
        if cfg.init_weights:
            warm_start(model, cfg.init_weights, tuple(cfg.filters))
            log.info("starting from %s", cfg.init_weights)
        schedule = keras.optimizers.schedules.CosineDecay(
            cfg.learning_rate, decay_steps=cfg.epochs * cfg.steps_per_epoch, alpha=0.05)
        model.compile(optimizer=keras.optimizers.Adam(schedule), loss=bce_dice_loss)
    log.info("U-Net with %d parameters; %d epochs × %d steps × batch %d",
             model.count_params(), cfg.epochs, cfg.steps_per_epoch, cfg.batch_size)

    sequence = CropSequence(
        images, [s.labels for s in train_set], weights, cfg, workers=2, use_multiprocessing=False)
    sequence.epoch_seed += initial_epoch
    callbacks = [
        keras.callbacks.ModelCheckpoint(best_path, monitor="val_loss", save_best_only=True,
                                        save_weights_only=True),
        keras.callbacks.ModelCheckpoint(last_path),
        keras.callbacks.CSVLogger(run_dir / "history.csv", append=initial_epoch > 0),
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=cfg.patience),
        EpochLog(state_path),
        TimeLimit(cfg.time_limit_minutes),
    ]
    model.fit(sequence, validation_data=(val_x, val_y), epochs=cfg.epochs,
              initial_epoch=initial_epoch, callbacks=callbacks, verbose=1)
    plot_curves(run_dir / "history.csv", run_dir / "curves.png")
    log.info("training finished in %.1f min; best weights in %s",
             (time.monotonic() - t0) / 60, best_path)
    return best_path


def plot_curves(history_csv: Path, out_png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = np.genfromtxt(history_csv, delimiter=",", names=True)
    rows = np.atleast_1d(rows)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(rows["epoch"] + 1, rows["loss"], label="training loss")
    ax.plot(rows["epoch"] + 1, rows["val_loss"], label="validation loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("BCE + (1 − Dice), weighted mean over channels")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
