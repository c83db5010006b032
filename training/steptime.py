"""Seconds per training step under each Keras precision policy, on this CPU, in one process,
so the ratio compares like with like: `python -m training.steptime [--steps N]`."""

from __future__ import annotations

import argparse
import time

import keras
import numpy as np

from training.model import build_unet
from training.train import bce_dice_loss

POLICIES = ("float32", "mixed_bfloat16")


def step_seconds(policy: str, steps: int, batch: int, crop: int) -> float:
    """Median seconds of `steps` train_on_batch calls after two warm-up steps."""
    keras.mixed_precision.set_global_policy(policy)
    model = build_unet()
    model.compile(optimizer=keras.optimizers.Adam(1e-4), loss=bce_dice_loss)
    rng = np.random.default_rng(0)
    x = rng.random((batch, crop, crop, 3), np.float32)
    y = (rng.random((batch, crop, crop, model.output_shape[-1])) > 0.8).astype(np.float32)
    times = []
    for n in range(steps + 2):
        start = time.perf_counter()
        model.train_on_batch(x, y)
        if n >= 2:
            times.append(time.perf_counter() - start)
    keras.mixed_precision.set_global_policy("float32")
    return float(np.median(times))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--crop", type=int, default=256)
    args = p.parse_args()
    seconds = {policy: step_seconds(policy, args.steps, args.batch_size, args.crop) for policy in POLICIES}
    for policy, s in seconds.items():
        print(f"{policy:>15}: {s:.3f} s/step ({seconds['float32'] / s:.2f}× float32's speed)")


if __name__ == "__main__":
    main()
