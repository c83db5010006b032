"""FLOPs of one forward pass, counted from the ONNX graph at a given input size.

Shapes come from ONNX shape inference with the input fixed to 1×H×W×C; weights give the
kernel sizes. A multiply-add counts as 2 FLOPs:

    Conv           2 · N · Cout · Hout · Wout · (Cin/group · kh · kw)
    ConvTranspose  2 · N · Cin · Hin · Win · (Cout/group · kh · kw)
    MatMul / Gemm  2 · M · K · N (times any batch dimensions)

Element-wise work (bias, ReLU, sigmoid, pooling, concatenation) is reported apart: it is
memory traffic, not arithmetic a matmul peak can be compared with.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import shape_inference

ELEMENTWISE = {"Relu", "Sigmoid", "Add", "Mul", "Sub", "Div", "Max", "MaxPool", "BatchNormalization"}


def _fixed_input(model: onnx.ModelProto, shape: tuple[int, ...]) -> onnx.ModelProto:
    model = onnx.ModelProto.FromString(model.SerializeToString())
    initializers = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    for dim, value in zip(inputs[0].type.tensor_type.shape.dim, shape, strict=True):
        dim.ClearField("dim_param")
        dim.dim_value = value
    for out in model.graph.output:  # let inference fill the outputs in
        for dim in out.type.tensor_type.shape.dim:
            dim.ClearField("dim_param")
    return model


def _shapes(model: onnx.ModelProto) -> dict[str, list[int | None]]:
    inferred = shape_inference.infer_shapes(model, data_prop=True)
    shapes: dict[str, list[int | None]] = {}
    for vi in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]:
        dims = vi.type.tensor_type.shape.dim
        shapes[vi.name] = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    for init in inferred.graph.initializer:
        shapes[init.name] = list(init.dims)
    return shapes


def _known(shape: list[int | None] | None) -> bool:
    return shape is not None and all(d is not None for d in shape)


def count_flops(
    model_path: str | Path, height: int, width: int, channels: int = 3, batch: int = 1, layout: str = "NHWC"
) -> dict[str, Any]:
    """FLOPs of one run on a batch×H×W×C (or NCHW) input, by op type."""
    model = onnx.load(str(model_path))
    shape = (batch, height, width, channels) if layout == "NHWC" else (batch, channels, height, width)
    shapes = _shapes(_fixed_input(model, shape))
    by_op: dict[str, float] = defaultdict(float)
    elementwise = 0.0
    unknown: list[str] = []
    for node in model.graph.node:
        op = node.op_type
        if op in ("Conv", "ConvTranspose"):
            w = shapes.get(node.input[1])
            x, y = shapes.get(node.input[0]), shapes.get(node.output[0])
            if not _known(w):
                unknown.append(node.name)
                continue
            kernel = int(np.prod(w[1:]))  # Conv: Cin/g·kh·kw; ConvTranspose: Cout/g·kh·kw
            if op == "Conv" and _known(y):
                by_op[op] += 2.0 * y[0] * w[0] * int(np.prod(y[2:])) * kernel
                elementwise += float(np.prod(y))  # bias
            elif op == "ConvTranspose" and _known(x):
                by_op[op] += 2.0 * x[0] * w[0] * int(np.prod(x[2:])) * kernel
                if _known(y):
                    elementwise += float(np.prod(y))
            else:
                unknown.append(node.name)
        elif op in ("MatMul", "Gemm"):
            a, b = shapes.get(node.input[0]), shapes.get(node.input[1])
            if not (_known(a) and _known(b)):
                unknown.append(node.name)
                continue
            if op == "Gemm":
                attrs = {at.name: at.i for at in node.attribute}
                m, k = (a[1], a[0]) if attrs.get("transA") else (a[0], a[1])
                n = b[0] if attrs.get("transB") else b[1]
                by_op[op] += 2.0 * m * k * n
            else:
                batch_dims = int(np.prod(a[:-2])) if len(a) > 2 else 1
                by_op[op] += 2.0 * batch_dims * a[-2] * a[-1] * b[-1]
        elif op in ELEMENTWISE:
            y = shapes.get(node.output[0])
            if _known(y):
                elementwise += float(np.prod(y))
    total = float(sum(by_op.values()))
    return {
        "input_shape": list(shape),
        "gflop": round(total / 1e9, 4),
        "gflop_by_op": {k: round(v / 1e9, 4) for k, v in sorted(by_op.items())},
        "elementwise_gop": round(elementwise / 1e9, 4),
        "flop_per_pixel": round(total / (batch * height * width), 1),
        "uncounted_nodes": unknown,
    }


if __name__ == "__main__":
    import json
    import sys

    h, w = (int(v) for v in (sys.argv[2:4] if len(sys.argv) > 3 else (1024, 1024)))
    print(json.dumps(count_flops(sys.argv[1], h, w), indent=2))
