"""Exact rewrites of the tf2onnx graph that make it cheaper to run and to quantise.

tf2onnx cannot prove the shape of a Keras 'same' transposed convolution when height and width
are dynamic, so it follows each one with Shape → … → Slice → Pad to force the size. For a 2×2
kernel with stride 2 the size is always exactly twice the input, so that chain copies the
tensor twice for nothing. And onnxruntime has no INT8 kernel for ConvTranspose, so it stays
float32 in a quantised model. A 2×2/stride-2 ConvTranspose is the same arithmetic as a 1×1
Conv with 4× the output channels followed by DepthToSpace, which quantises like any Conv.
The export's parity check against Keras runs on the rewritten graph.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

BLOCK = 2


def simplify_upsampling(model: onnx.ModelProto, *, as_conv: bool = True) -> tuple[onnx.ModelProto, int]:
    """Drop the size-forcing Slice/Pad after every 2×2/stride-2 ConvTranspose and, with
    `as_conv`, rewrite the ConvTranspose itself. Returns the model and how many were found."""
    graph = model.graph
    weights = {init.name: init for init in graph.initializer}
    rewritten = 0
    for node in list(graph.node):
        if node.op_type != "ConvTranspose" or not _is_plain_2x2_stride_2(node):
            continue
        out = node.output[0]
        _bypass_size_forcing(graph, out)
        rewritten += 1
        if not as_conv:
            continue
        w = numpy_helper.to_array(weights[node.input[1]])  # (C_in, C_out, 2, 2)
        c_in, c_out = w.shape[:2]
        # channel (a*2 + b)*C_out + o of the 1×1 conv feeds output pixel (2i+a, 2j+b) of channel o
        w1 = w.transpose(2, 3, 1, 0).reshape(BLOCK * BLOCK * c_out, c_in, 1, 1)
        new_inits = [numpy_helper.from_array(np.ascontiguousarray(w1), f"{node.name}/w1x1")]
        inputs = [node.input[0], new_inits[0].name]
        if len(node.input) > 2 and node.input[2]:
            bias = numpy_helper.to_array(weights[node.input[2]])
            new_inits.append(numpy_helper.from_array(np.tile(bias, BLOCK * BLOCK), f"{node.name}/b1x1"))
            inputs.append(new_inits[1].name)
        graph.initializer.extend(new_inits)
        conv = helper.make_node("Conv", inputs, [f"{out}/space"], name=f"{node.name}/conv1x1",
                                kernel_shape=[1, 1])
        shuffle = helper.make_node("DepthToSpace", [f"{out}/space"], [out], name=f"{node.name}/shuffle",
                                   blocksize=BLOCK, mode="DCR")
        position = list(graph.node).index(node)
        graph.node.remove(node)
        graph.node.insert(position, shuffle)
        graph.node.insert(position, conv)
    _drop_dead(graph)
    return model, rewritten


def _is_plain_2x2_stride_2(node: onnx.NodeProto) -> bool:
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    return (
        list(attrs.get("kernel_shape", [])) == [BLOCK, BLOCK]
        and list(attrs.get("strides", [])) == [BLOCK, BLOCK]
        and not any(attrs.get("pads", []))
        and not any(attrs.get("output_padding", []))
        and attrs.get("group", 1) == 1
        and list(attrs.get("dilations", [1, 1])) == [1, 1]
        and attrs.get("auto_pad", b"NOTSET") in (b"NOTSET", "NOTSET")
    )


def _bypass_size_forcing(graph: onnx.GraphProto, out: str) -> None:
    """ConvTranspose → Slice → Pad → consumers becomes ConvTranspose → consumers."""
    consumers = [n for n in graph.node if out in n.input]
    slices = [n for n in consumers if n.op_type == "Slice" and n.input[0] == out]
    for sl in slices:
        pads = [n for n in graph.node if n.op_type == "Pad" and n.input[0] == sl.output[0]]
        for pad in pads:
            for n in graph.node:
                for k, name in enumerate(n.input):
                    if name == pad.output[0]:
                        n.input[k] = out


def _drop_dead(graph: onnx.GraphProto) -> None:
    """Remove nodes whose outputs nothing uses, and initialisers no node reads."""
    keep = {o.name for o in graph.output}
    while True:
        used = keep | {name for n in graph.node for name in n.input}
        dead = [n for n in graph.node if not any(o in used for o in n.output)]
        if not dead:
            break
        for n in dead:
            graph.node.remove(n)
    used = {name for n in graph.node for name in n.input}
    for init in [i for i in graph.initializer if i.name not in used]:
        graph.initializer.remove(init)
