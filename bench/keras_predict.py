"""The same network run the original notebook's way: Keras `model.predict` on the TensorFlow
backend, on exactly the tensors onnxruntime gets. Run as a subprocess by bench/run.py so that
TensorFlow's import, memory and thread pools never touch the onnxruntime measurements.

    python -m bench.keras_predict WORKDIR   (reads WORKDIR/keras_job.json, writes keras_result.json)
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")


def main(workdir: Path) -> int:
    job = json.loads((workdir / "keras_job.json").read_text())
    t0 = time.perf_counter()
    import keras
    import numpy as np
    import tensorflow as tf

    from bench.stats import repeat, summarize
    from training.model import build_unet

    import_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    model = build_unet(tuple(job["filters"]))
    weights = job.get("weights")
    if weights and Path(weights).is_file():
        model.load_weights(weights)
        weights_note = f"trained weights {Path(weights).name}"
    else:
        weights_note = "random initial weights (no .weights.h5 beside the model): timing only"
    build_s = time.perf_counter() - t0
    result = {
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
        "weights": weights_note,
        "import_s": round(import_s, 2),
        "build_s": round(build_s, 2),
        "tf_intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads() or "default (all cores)",
        "sizes": {},
    }
    for key, spec in job["sizes"].items():
        x = np.load(workdir / spec["input"])
        t0 = time.perf_counter()
        y = model.predict(x, verbose=0)  # first call traces the graph for this shape
        first_s = time.perf_counter() - t0
        entry = {"input_shape": list(x.shape), "first_call_s": round(first_s, 3)}
        ref = workdir / spec["onnx_output"]
        if ref.is_file():
            entry["max_abs_diff_vs_onnx"] = float(np.abs(np.load(ref) - y).max())
        times = repeat(
            lambda _i, x=x: model.predict(x, verbose=0),
            min_reps=spec["min_reps"],
            max_reps=spec["max_reps"],
            budget_s=spec["budget_s"],
            warmup=1,
        )
        entry["predict"] = summarize(times)
        result["sizes"][key] = entry
        print(
            f"  keras {key}: median {entry['predict']['median_ms']:.1f} ms ({entry['predict']['n']} runs)",
            file=sys.stderr,
            flush=True,
        )
    (workdir / "keras_result.json").write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
