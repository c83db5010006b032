"""The two anchors the service's speed is judged against: Keras `predict` on the same weights,
as the original notebook ran the network (in a child process, `python -m bench.anchors JOB_DIR`,
so TensorFlow never touches the onnxruntime measurements); and the machine's measured matmul
peak (numpy's float32 BLAS, onnxruntime's int8 MatMulInteger) with the model's FLOPs per pixel
from its ONNX graph, so that a time reads as a share of what the cores can do."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

from bench.inprocess import summary, timed


def matmul_peak(n: int = 2048, reps: int = 5, threads: int = 2) -> dict[str, Any]:
    """Best rate of an n×n×n matmul: 2·n³ operations, on `threads` threads."""
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((n, n), dtype=np.float32), rng.standard_normal((n, n), dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["A", "B"], ["Y"])], "peak",
        [helper.make_tensor_value_info("A", TensorProto.UINT8, [n, n]),
         helper.make_tensor_value_info("B", TensorProto.INT8, [n, n])],
        [helper.make_tensor_value_info("Y", TensorProto.INT32, [n, n])])
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8).SerializeToString(),
        options, providers=["CPUExecutionProvider"])
    feed = {"A": rng.integers(0, 256, (n, n), dtype=np.uint8), "B": rng.integers(-128, 128, (n, n), dtype=np.int8)}
    return {
        "size": n,
        "threads": threads,
        # billions of operations per second in the fastest of `reps` calls (after a warm-up)
        "fp32_gflops": round(2.0 * n**3 / min(timed(lambda: a @ b, reps, 30.0)) / 1e9, 1),
        "int8_gops": round(2.0 * n**3 / min(timed(lambda: session.run(None, feed), reps, 30.0)) / 1e9, 1),
    }


def flop_per_pixel(model_path: Path, side: int = 256) -> float:
    """Multiply-adds × 2 of the Conv nodes per input pixel, from ONNX shape inference on a
    side×side NHWC input (a float32 graph: its weights are initializers). Element-wise work
    (ReLU, pooling, concatenation) is memory traffic, not arithmetic, and is left out."""
    model = onnx.load(str(model_path))
    for dim, value in zip(model.graph.input[0].type.tensor_type.shape.dim, (1, side, side, 3), strict=True):
        dim.dim_value = value
    inferred = onnx.shape_inference.infer_shapes(model)
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in inferred.graph.value_info}
    shapes |= {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in inferred.graph.output}
    weights = {w.name: list(w.dims) for w in model.graph.initializer}
    flop = sum(2 * math.prod(weights[n.input[1]]) * math.prod(shapes[n.output[0]][2:])
               for n in model.graph.node if n.op_type == "Conv")
    return flop / side**2


def keras_predict(card, folder: Path, inputs: dict[str, np.ndarray],
                  reference: dict[str, np.ndarray], reps: int, budget_s: float) -> dict[str, Any]:
    """Keras `predict` of the card's weights (in `folder`) per input, in a child process; each
    output is compared with `reference` (the float32 ONNX model's, on the same tensor)."""
    with tempfile.TemporaryDirectory(prefix="bench-keras-") as tmp:
        job = Path(tmp)
        np.savez(job / "inputs.npz", **inputs)
        np.savez(job / "reference.npz", **reference)
        job_spec = {"weights": str(folder / card.architecture["keras_weights"]), "reps": reps, "budget_s": budget_s,
                    "filters": card.architecture["filters"], "outputs": len(card.output.channels)}
        (job / "job.json").write_text(json.dumps(job_spec))
        env = os.environ | {"TF_CPP_MIN_LOG_LEVEL": "2", "KERAS_BACKEND": "tensorflow"}
        done = subprocess.run([sys.executable, "-m", "bench.anchors", str(job)], env=env,
                              capture_output=True, text=True, timeout=600, check=False)
        if done.returncode:
            return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else str(done.returncode)}
        return json.loads((job / "result.json").read_text())


def _keras_child(job: Path) -> None:
    """Inside the child: build the U-Net from the card's filters, load the weights, time predict."""
    spec = json.loads((job / "job.json").read_text())
    t0 = time.perf_counter()
    import keras
    import tensorflow as tf

    from training.model import build_unet

    model = build_unet(tuple(spec["filters"]), outputs=spec["outputs"])
    model.load_weights(spec["weights"])
    result: dict[str, Any] = {"tensorflow": tf.__version__, "keras": keras.__version__,
                              "import_and_build_s": round(time.perf_counter() - t0, 1), "sizes": {}}
    inputs, reference = np.load(job / "inputs.npz"), np.load(job / "reference.npz")
    for key in inputs.files:
        x = inputs[key]
        diff = float(np.abs(model.predict(x, verbose=0) - reference[key]).max())  # also the warm-up
        times = timed(lambda x=x: model.predict(x, verbose=0), spec["reps"], spec["budget_s"], warm_up=False)
        result["sizes"][key] = {"predict": summary(times), "max_abs_diff_vs_onnx": diff}
    (job / "result.json").write_text(json.dumps(result))


if __name__ == "__main__":
    _keras_child(Path(sys.argv[1]))
