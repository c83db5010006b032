"""Fit the U-Net on random crops, one optimiser step at a time, with the whole state in one
checkpoint (`training.checkpoint`) so that a run cut off at any step resumes exactly there."""

from __future__ import annotations

import csv
import json
import logging
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import keras
import numpy as np
from tqdm import tqdm

from nuclei.cpu import describe
from nuclei.normalize import normalize
from nuclei.postprocess import OUTPUT_CHANNELS
from training import checkpoint
from training.augment import (
    AugmentConfig,
    at_training_scale,
    is_rare_style,
    training_pair,
    validation_pair,
)
from training.checkpoint import RunState
from training.data import Dataset, Sample, split_ids
from training.host import auto_precision
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
    precision: str = "float32"  # or "mixed_bfloat16" (keras mixed precision policy), or "auto"
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    checkpoint: str = ""  # the run's state file ("": RUN_DIR/checkpoint.npz); resumed when it exists
    checkpoint_minutes: float = 2.0  # wall minutes between checkpoints (and at every epoch's end)
    cpu_budget_minutes: float = 0.0  # the run's CPU time over all its legs; 0: no limit
    outputs: int = len(OUTPUT_CHANNELS)  # output channels: a fine-tune keeps its parent's (1.3.0: 2)
    lr_floor: float = 0.05  # the cosine schedule's end, a fraction of the rate; 1: constant (fine-tunes)


# What a resumed leg takes from its command line; everything else comes from the checkpoint.
LEG_SETTINGS = ("data", "run_dir", "checkpoint", "checkpoint_minutes", "time_limit_minutes",
                "cpu_budget_minutes", "precision")


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


def prepared(sample, cfg: TrainConfig) -> tuple[np.ndarray, np.ndarray]:
    """A normalised image and its labels, at the recipe's training scale when it has one."""
    image = normalize(sample.image)
    band = tuple(cfg.augment.band) if any(cfg.augment.band) else None
    if cfg.augment.to_diameter or band:
        return at_training_scale(image, sample.labels, cfg.augment.to_diameter, band)
    return image, sample.labels


def draw_batch(images, labels, p: np.ndarray, cfg: TrainConfig, step: int) -> tuple[np.ndarray, np.ndarray]:
    """The crops of optimiser step `step`: a function of the seed and the step alone, so a
    resumed run sees exactly the batches the uninterrupted one would have."""
    rng = np.random.default_rng([cfg.seed, step])
    picks = rng.choice(len(images), size=cfg.batch_size, p=p)
    pairs = [training_pair(images[i], labels[i], cfg.augment, rng) for i in picks]
    return np.stack([x for x, _ in pairs]), np.stack([y[..., : cfg.outputs] for _, y in pairs])


class StopRequest:
    """SIGTERM or Ctrl-C ends the leg after the current step, with a checkpoint."""

    def __init__(self):
        self.requested = False
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        log.info("signal %d: stopping after this step, with a checkpoint", signum)
        self.requested = True

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def compiled_model(cfg: TrainConfig, state: RunState, saved) -> keras.Model:
    """The U-Net with its optimiser, from the checkpoint when there is one."""
    model = build_unet(tuple(cfg.filters), outputs=cfg.outputs)
    schedule = keras.optimizers.schedules.CosineDecay(
        cfg.learning_rate, decay_steps=state.total_steps, alpha=cfg.lr_floor)
    model.compile(optimizer=keras.optimizers.Adam(schedule), loss=bce_dice_loss)
    if saved is not None:
        weights, optimizer = saved
        model.set_weights(weights)
        model.optimizer.build(model.trainable_variables)
        variables = model.optimizer.variables
        if len(variables) != len(optimizer):
            raise ValueError(f"checkpoint has {len(optimizer)} optimiser variables, the model {len(variables)}")
        for variable, value in zip(variables, optimizer, strict=True):
            variable.assign(value)
    elif cfg.init_weights:
        warm_start(model, cfg.init_weights, tuple(cfg.filters))
        log.info("starting from %s", cfg.init_weights)
    return model


def resume_point(cfg: TrainConfig) -> tuple[TrainConfig, RunState, tuple | None]:
    """The checkpoint to continue (its recipe wins over the command line's, leg settings
    aside), or a fresh state."""
    path = Path(cfg.checkpoint)
    if not path.exists():
        return cfg, RunState(config=asdict(cfg)), None
    state, weights, optimizer = checkpoint.load(path)
    leg = {k: getattr(cfg, k) for k in LEG_SETTINGS}
    saved = state.config
    recipe = TrainConfig(**{**saved, "augment": AugmentConfig(**saved["augment"]),
                            "filters": tuple(saved["filters"]), **leg})
    log.info("resuming from %s at step %d of %d", path, state.step, state.total_steps)
    return recipe, state, (weights, optimizer)


def train(cfg: TrainConfig, samples: tuple[list[Sample], list[Sample]] | None = None) -> Path:
    """Train, or resume from the checkpoint, until the run is done or this leg's limits
    (wall minutes, CPU budget, a signal) end it; returns the best weights' path. `samples`:
    (training, validation) images already in memory (a fine-tune's), instead of `cfg.data`'s split."""
    run_dir = Path(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg.checkpoint = cfg.checkpoint or str(run_dir / "checkpoint.npz")
    cfg, state, saved = resume_point(cfg)
    best_path = run_dir / "best.weights.h5"
    precision = auto_precision() if cfg.precision == "auto" else cfg.precision
    keras.utils.set_random_seed(cfg.seed)
    keras.mixed_precision.set_global_policy(precision)

    t0, cpu0 = time.monotonic(), time.process_time()
    train_set, val_set = samples if samples is not None else load_split(cfg)
    log.info("loaded %d training and %d validation images in %.0f s",
             len(train_set), len(val_set), time.monotonic() - t0)
    pairs = [prepared(s, cfg) for s in train_set]
    images, labels = [x for x, _ in pairs], [y for _, y in pairs]
    p = np.asarray(sampling_weights(train_set, cfg), np.float64)
    p /= p.sum()
    val_pairs = [validation_pair(*prepared(s, cfg), cfg.augment.crop) for s in val_set]
    val_x, val_y = np.stack([x for x, _ in val_pairs]), np.stack([y[..., : cfg.outputs] for _, y in val_pairs])
    (run_dir / "config.json").write_text(json.dumps(
        {**asdict(cfg), "train_ids": [s.image_id for s in train_set],
         "val_ids": [s.image_id for s in val_set]}, indent=1))

    if state.done:
        log.info("the run in %s is complete (%d steps): nothing to do", cfg.checkpoint, state.step)
        return best_path
    model = compiled_model(cfg, state, saved)
    log.info("U-Net with %d parameters; %d epochs × %d steps × batch %d of %d², %s on %s",
             model.count_params(), cfg.epochs, cfg.steps_per_epoch, cfg.batch_size,
             cfg.augment.crop, precision, describe())
    leg = Leg(cfg, state, precision, cpu0)

    def save(final: bool) -> None:
        leg.close(state)
        checkpoint.save(Path(cfg.checkpoint), state, model.get_weights(),
                        [np.asarray(v) for v in model.optimizer.variables])
        if not final:  # a provisional record, for a kill before the leg ends
            state.legs.pop()

    with StopRequest() as stop, ThreadPoolExecutor(1) as pool, tqdm(
            total=state.total_steps, initial=state.step, unit="step", desc="training") as bar:
        upcoming = pool.submit(draw_batch, images, labels, p, cfg, state.step)
        last_save = time.monotonic()
        while not state.done:
            x, y = upcoming.result()
            if state.step + 1 < state.total_steps:
                upcoming = pool.submit(draw_batch, images, labels, p, cfg, state.step + 1)
            loss = float(model.train_on_batch(x, y, return_dict=True)["loss"])
            state.step += 1
            state.loss_sum += loss
            bar.total = leg.projected_total(state)
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}")
            if state.step % cfg.steps_per_epoch == 0:
                state.cpu_seconds = leg.cpu_seconds()
                end_epoch(model, state, val_x, val_y, best_path, run_dir)
            stopping = stop.requested or leg.over_limit() or state.done
            if stopping or state.step % cfg.steps_per_epoch == 0 or \
                    time.monotonic() - last_save >= cfg.checkpoint_minutes * 60:
                save(final=stopping)
                last_save = time.monotonic()
            if stopping and not state.done:
                log.info("leg ends at step %d of %d (%s); resume with the same command",
                         state.step, state.total_steps, "signal" if stop.requested else "limit")
                break
    if state.epochs:
        plot_curves(run_dir / "history.csv", run_dir / "curves.png")
    log.info("leg: %s", json.dumps(state.legs[-1]))
    if state.done:
        model.save_weights(run_dir / "final.weights.h5")
        log.info("run finished after %d steps; best weights (epoch %d) in %s",
                 state.step, state.best_epoch, best_path)
    return best_path


def end_epoch(model, state: RunState, val_x, val_y, best_path: Path, run_dir: Path) -> None:
    """Validation loss, the best weights, the history row and the log line of one epoch."""
    epoch = len(state.epochs) + 1
    val_loss = float(model.evaluate(val_x, val_y, batch_size=8, verbose=0))
    loss = state.loss_sum / state.config["steps_per_epoch"]
    state.loss_sum = 0.0
    state.epochs.append({"epoch": epoch - 1, "loss": loss, "val_loss": val_loss})
    if val_loss < state.best_val_loss:
        state.best_val_loss, state.best_epoch = val_loss, epoch
        model.save_weights(best_path)
    with open(run_dir / "history.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["epoch", "loss", "val_loss"])
        writer.writeheader()
        writer.writerows(state.epochs)
    log.info("epoch %d loss %.4f val_loss %.4f (step %d, %.0f CPU s)",
             epoch, loss, val_loss, state.step, state.cpu_seconds)


class Leg:
    """One sitting of a run: from a start (or resume) to a stop. Its record (host, steps,
    minutes, CPU minutes, seconds per step, loss) goes into the checkpoint's `legs`."""

    def __init__(self, cfg: TrainConfig, state: RunState, precision: str, cpu0: float):
        self.cfg = cfg
        self.wall0, self.cpu0 = time.monotonic(), cpu0
        self.cpu_before = state.cpu_seconds
        self.record = {"started": datetime.now(UTC).isoformat(timespec="seconds"), "host": describe(),
                       "precision": precision, "from_step": state.step}
        self.deadline = self.wall0 + cfg.time_limit_minutes * 60 if cfg.time_limit_minutes > 0 else None

    def close(self, state: RunState) -> None:
        minutes = (time.monotonic() - self.wall0) / 60
        steps = state.step - self.record["from_step"]
        state.cpu_seconds = self.cpu_seconds()
        last = state.epochs[-1] if state.epochs else {}
        self.record.update(to_step=state.step, minutes=round(minutes, 2),
                           cpu_minutes=round((time.process_time() - self.cpu0) / 60, 2),
                           s_per_step=round(minutes * 60 / steps, 3) if steps else None,
                           loss=round(last.get("loss", float("nan")), 4),
                           val_loss=round(last.get("val_loss", float("nan")), 4))
        state.legs.append(dict(self.record))

    def projected_total(self, state: RunState) -> int:
        """The step the leg will end at: the planned last one, or, at this leg's pace so far,
        the one its time limit falls at (so the progress bar ends where the leg does)."""
        done = state.step - self.record["from_step"]
        if self.deadline is None or not done:
            return state.total_steps
        now = time.monotonic()
        left = max(0.0, self.deadline - now) / ((now - self.wall0) / done)
        return min(state.total_steps, state.step + int(left))

    def cpu_seconds(self) -> float:
        """The run's CPU time so far: earlier legs and this one."""
        return self.cpu_before + time.process_time() - self.cpu0

    def over_limit(self) -> bool:
        if self.deadline is not None and time.monotonic() > self.deadline:
            return True
        budget = self.cfg.cpu_budget_minutes * 60
        return budget > 0 and self.cpu_seconds() >= budget


@contextmanager
def logged_to(run_dir: Path) -> Iterator[None]:
    """The `training` log also into RUN_DIR/train.log, for the run's record."""
    run_dir.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(run_dir / "train.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    log.addHandler(handler)
    try:
        yield
    finally:
        log.removeHandler(handler)
        handler.close()


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
