"""The export's graph rewrite (training/onnx_graph.py) is exact: a 2×2/stride-2 ConvTranspose
and tf2onnx's size-forcing Slice → Pad give the same numbers as 1×1 Conv + DepthToSpace."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from training.onnx_graph import simplify_upsampling


def upsampling_graph(c_in: int, c_out: int, bias: bool) -> onnx.ModelProto:
    """x → ConvTranspose(2×2, stride 2) → Slice(to 2H×2W) → Pad(0) → Relu, like tf2onnx emits."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(size=(c_in, c_out, 2, 2)).astype(np.float32), "w")]
    inputs = ["x", "w"]
    if bias:
        inits.append(numpy_helper.from_array(rng.normal(size=c_out).astype(np.float32), "b"))
        inputs.append("b")
    inits += [numpy_helper.from_array(np.array(v, np.int64), n) for n, v in
              (("starts", [0, 0]), ("axes", [2, 3]), ("pads", [0] * 8))]
    nodes = [
        helper.make_node("ConvTranspose", inputs, ["up"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Shape", ["up"], ["shape"]),
        helper.make_node("Slice", ["shape", "starts_hw", "ends_hw"], ["hw"]),
        helper.make_node("Slice", ["up", "starts", "hw", "axes"], ["cropped"]),
        helper.make_node("Pad", ["cropped", "pads"], ["padded"]),
        helper.make_node("Relu", ["padded"], ["y"]),
    ]
    inits += [numpy_helper.from_array(np.array([2], np.int64), "starts_hw"),
              numpy_helper.from_array(np.array([4], np.int64), "ends_hw")]
    graph = helper.make_graph(
        nodes, "up", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c_in, None, None])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, c_out, None, None])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(5, 7), (16, 16), (1, 3)])
def test_rewrite_gives_the_same_output(bias, shape):
    model = upsampling_graph(c_in=6, c_out=4, bias=bias)
    x = np.random.default_rng(1).normal(size=(1, 6, *shape)).astype(np.float32)
    expected = run(model, x)
    rewritten, count = simplify_upsampling(onnx.load_from_string(model.SerializeToString()))
    onnx.checker.check_model(rewritten)
    ops = [n.op_type for n in rewritten.graph.node]
    assert count == 1 and ops == ["Conv", "DepthToSpace", "Relu"], ops
    got = run(rewritten, x)
    assert got.shape == expected.shape == (1, 4, 2 * shape[0], 2 * shape[1])
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_other_transposed_convolutions_are_left_alone():
    model = upsampling_graph(c_in=3, c_out=2, bias=True)
    node = model.graph.node[0]
    del node.attribute[:]
    node.attribute.extend([helper.make_attribute("kernel_shape", [3, 3]), helper.make_attribute("strides", [2, 2])])
    _, count = simplify_upsampling(model)
    assert count == 0 and model.graph.node[0].op_type == "ConvTranspose"
