"""A training run's whole state in one compressed file, so a run stopped at any step goes on
later, on this machine or another, exactly where it stopped.

The file holds the weights (batch-norm statistics included), the optimiser's variables (its
step count, so the learning-rate schedule, and Adam's moments), the run's configuration and
its record: epochs so far, the best validation loss, CPU seconds spent and one entry per leg.
Weights are stored as float32 whatever precision policy trained them, so a leg may run in
bfloat16 on one host and float32 on the next. It is written to a temporary name and renamed,
so a kill during the write leaves the previous checkpoint whole.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = 1


@dataclass
class RunState:
    """What the run has done so far (JSON in the checkpoint)."""

    config: dict[str, Any]
    step: int = 0  # optimiser steps completed
    loss_sum: float = 0.0  # training loss summed over the current epoch's steps so far
    epochs: list[dict[str, float]] = field(default_factory=list)  # one row per finished epoch
    best_val_loss: float = float("inf")
    best_epoch: int = 0
    cpu_seconds: float = 0.0  # process CPU time over every leg
    legs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def total_steps(self) -> int:
        return int(self.config["epochs"]) * int(self.config["steps_per_epoch"])

    @property
    def done(self) -> bool:
        return self.step >= self.total_steps or self.stopped_early

    @property
    def stopped_early(self) -> bool:
        patience = int(self.config["patience"])
        return bool(self.epochs) and len(self.epochs) - self.best_epoch >= patience


def save(path: Path, state: RunState, weights: list[np.ndarray], optimizer: list[np.ndarray]) -> None:
    """Write atomically: a temporary file in the same folder, then a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {f"w{i:04d}": np.asarray(w, np.float32) for i, w in enumerate(weights)}
    arrays.update({f"o{i:04d}": np.asarray(v) for i, v in enumerate(optimizer)})
    meta = {"format": FORMAT, **state.__dict__}
    buffer = io.BytesIO()
    np.savez_compressed(buffer, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8), **arrays)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(buffer.getvalue())
    os.replace(tmp, path)


def load(path: Path) -> tuple[RunState, list[np.ndarray], list[np.ndarray]]:
    """(state, weights, optimiser variables) as `save` wrote them."""
    with np.load(path) as z:
        meta = json.loads(z["meta"].tobytes())
        weights = [z[k] for k in sorted(k for k in z.files if k.startswith("w"))]
        optimizer = [z[k] for k in sorted(k for k in z.files if k.startswith("o"))]
    if meta.pop("format", None) != FORMAT:
        raise ValueError(f"{path}: not a checkpoint of format {FORMAT}")
    return RunState(**meta), weights, optimizer
