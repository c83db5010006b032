"""The machine's measured arithmetic peak: the best rate of a large square matmul.

float32 is measured twice, with numpy's BLAS and with onnxruntime's own GEMM (MLAS, the
library that runs the model's convolutions), and the higher one is the peak. int8 is measured
the same way with onnxruntime's MatMulInteger (uint8 × int8 → int32), the kernel family
INT8-quantised convolutions use.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper


def _best_rate(fn, flop: float, reps: int, budget_s: float) -> tuple[float, int]:
    fn()  # warm-up: thread pools, packing buffers
    best = float("inf")
    start = time.perf_counter()
    n = 0
    while n < reps and (n < 2 or time.perf_counter() - start < budget_s):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
        n += 1
    return flop / best / 1e9, n


def _matmul_session(a_type: int, b_type: int, op: str, threads: int) -> ort.InferenceSession:
    out_type = TensorProto.INT32 if op == "MatMulInteger" else TensorProto.FLOAT
    graph = helper.make_graph(
        [helper.make_node(op, ["A", "B"], ["Y"])],
        "peak",
        [
            helper.make_tensor_value_info("A", a_type, ["M", "K"]),
            helper.make_tensor_value_info("B", b_type, ["K", "N"]),
        ],
        [helper.make_tensor_value_info("Y", out_type, ["M", "N"])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def measure_peak(n: int = 3072, threads: int = 2, reps: int = 6, budget_s: float = 4.0) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    flop = 2.0 * n**3
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    numpy_rate, numpy_n = _best_rate(lambda: a @ b, flop, reps, budget_s)
    fp32 = _matmul_session(TensorProto.FLOAT, TensorProto.FLOAT, "MatMul", threads)
    ort_rate, ort_n = _best_rate(lambda: fp32.run(None, {"A": a, "B": b}), flop, reps, budget_s)
    a8 = rng.integers(0, 256, (n, n), dtype=np.uint8)
    b8 = rng.integers(-128, 128, (n, n), dtype=np.int8)
    int8 = _matmul_session(TensorProto.UINT8, TensorProto.INT8, "MatMulInteger", threads)
    int8_rate, int8_n = _best_rate(lambda: int8.run(None, {"A": a8, "B": b8}), flop, reps, budget_s)
    return {
        "matmul_size": n,
        "threads": threads,
        "fp32_numpy_gflops": round(numpy_rate, 1),
        "fp32_onnxruntime_gflops": round(ort_rate, 1),
        "fp32_peak_gflops": round(max(numpy_rate, ort_rate), 1),
        "int8_onnxruntime_gops": round(int8_rate, 1),
        "int8_peak_gops": round(int8_rate, 1),
        "reps": {"numpy": numpy_n, "onnxruntime_fp32": ort_n, "onnxruntime_int8": int8_n},
        "method": f"best of ≥2 runs of a {n}×{n}×{n} matmul (2·n³ operations), {threads} threads",
        "onnx_version": onnx.__version__,
    }


if __name__ == "__main__":
    import json

    print(json.dumps(measure_peak(), indent=2))
