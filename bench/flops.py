"""FLOPs of one forward pass, counted from the ONNX graph at a given input size.

Shapes come from ONNX shape inference with the input fixed to 1×H×W×C; weights give the
kernel sizes. A multiply-add counts as 2 FLOPs:

    Conv           2 · N · Cout · Hout · Wout · (Cin/group · kh · kw)   (1×1 Convs included)
    ConvTranspose  2 · N · Cin · Hin · Win · (Cout/group · kh · kw)
    MatMul / Gemm  2 · M · K · N (times any batch dimensions)

Quantised graphs count the same arithmetic: a QDQ Conv (DequantizeLinear → Conv →
QuantizeLinear) is a Conv, and QLinearConv / ConvInteger / MatMulInteger / QLinearMatMul count
as Conv / MatMul with their weight read from its own input slot. `int8_gflop` is the part whose
operands are int8 in the file (what onnxruntime may run on integer kernels; the profiler says
which it did). Element-wise work (bias, ReLU, sigmoid, pooling, concatenation) is reported
apart: it is memory traffic, not arithmetic a matmul peak can be compared with.
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


# op type → (the float op whose arithmetic it does, input slot of x, of the weight / B operand)
ARITHMETIC = {
    "Conv": ("Conv", 0, 1),
    "ConvInteger": ("Conv", 0, 1),
    "QLinearConv": ("Conv", 0, 3),
    "ConvTranspose": ("ConvTranspose", 0, 1),
    "MatMul": ("MatMul", 0, 1),
    "MatMulInteger": ("MatMul", 0, 1),
    "QLinearMatMul": ("MatMul", 0, 3),
    "Gemm": ("Gemm", 0, 1),
}
INTEGER_OPS = {"ConvInteger", "QLinearConv", "MatMulInteger", "QLinearMatMul"}


def _node_flops(node: onnx.NodeProto, kind: str, xi: int, wi: int, shapes: dict[str, list[int | None]]) -> float | None:
    """Multiply-adds × 2 of one arithmetic node, or None when a shape is unknown."""
    x, w, y = shapes.get(node.input[xi]), shapes.get(node.input[wi]), shapes.get(node.output[0])
    if kind == "Conv" and _known(w) and _known(y):
        return 2.0 * y[0] * w[0] * int(np.prod(y[2:])) * int(np.prod(w[1:]))  # w: Cout × Cin/g × kh × kw
    if kind == "ConvTranspose" and _known(w) and _known(x):
        return 2.0 * x[0] * w[0] * int(np.prod(x[2:])) * int(np.prod(w[1:]))  # w: Cin × Cout/g × kh × kw
    if kind == "Gemm" and _known(x) and _known(w):
        attrs = {at.name: at.i for at in node.attribute}
        m, k = (x[1], x[0]) if attrs.get("transA") else (x[0], x[1])
        return 2.0 * m * k * (w[0] if attrs.get("transB") else w[1])
    if kind == "MatMul" and _known(x) and _known(w):
        return 2.0 * (int(np.prod(x[:-2])) if len(x) > 2 else 1) * x[-2] * x[-1] * w[-1]
    return None


def count_flops(
    model_path: str | Path, height: int, width: int, channels: int = 3, batch: int = 1, layout: str = "NHWC"
) -> dict[str, Any]:
    """FLOPs of one run on a batch×H×W×C (or NCHW) input, by op type (quantised ops under the
    float op whose arithmetic they do), and how much of it has int8 operands."""
    model = onnx.load(str(model_path))
    shape = (batch, height, width, channels) if layout == "NHWC" else (batch, channels, height, width)
    shapes = _shapes(_fixed_input(model, shape))
    producer = {out: node.op_type for node in model.graph.node for out in node.output}
    by_op: dict[str, float] = defaultdict(float)
    nodes: dict[str, int] = defaultdict(int)
    int8 = 0.0
    elementwise = 0.0
    unknown: list[str] = []
    for node in model.graph.node:
        op = node.op_type
        if op in ARITHMETIC:
            kind, xi, wi = ARITHMETIC[op]
            flop = _node_flops(node, kind, xi, wi, shapes)
            if flop is None:
                unknown.append(node.name)
                continue
            by_op[kind] += flop
            nodes[kind] += 1
            qdq = all(producer.get(node.input[i]) == "DequantizeLinear" for i in (xi, wi))
            if op in INTEGER_OPS or qdq:
                int8 += flop
            if kind in ("Conv", "ConvTranspose") and _known(shapes.get(node.output[0])):
                elementwise += float(np.prod(shapes[node.output[0]]))  # bias
        elif op in ELEMENTWISE:
            y = shapes.get(node.output[0])
            if _known(y):
                elementwise += float(np.prod(y))
    total = float(sum(by_op.values()))
    return {
        "input_shape": list(shape),
        "gflop": round(total / 1e9, 4),
        "gflop_by_op": {k: round(v / 1e9, 4) for k, v in sorted(by_op.items())},
        "nodes_by_op": dict(sorted(nodes.items())),
        "int8_gflop": round(int8 / 1e9, 4),
        "elementwise_gop": round(elementwise / 1e9, 4),
        "flop_per_pixel": round(total / (batch * height * width), 1),
        "uncounted_nodes": unknown,
    }


if __name__ == "__main__":
    import json
    import sys

    h, w = (int(v) for v in (sys.argv[2:4] if len(sys.argv) > 3 else (1024, 1024)))
    print(json.dumps(count_flops(sys.argv[1], h, w), indent=2))
