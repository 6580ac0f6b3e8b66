"""Rewrites of the exported ONNX graph that compute the same outputs with less work.

DeepLab V3+ as built here (:func:`looking_glass.model.deeplab.build_deeplabv3plus`) upsamples the
decoder's features (16 to 256 channels) x4 to the full tile and only then applies the head, a
1x1 convolution to one channel. Bilinear (or nearest) resizing and a 1x1 convolution are both
linear maps, one over the pixels of each channel and one over the channels of each pixel, and
the resize's weights at every output pixel sum to 1, so the bias passes through unchanged:
``conv1x1(resize(x)) == resize(conv1x1(x))`` in real arithmetic. :func:`head_before_resize`
applies the head first, at a quarter of the resolution, on one channel instead of many: the
resize then moves one channel instead of 16-256, and the convolution reads 1/16 of the pixels.
In float32 the outputs differ by rounding only (the shipped model: 2e-7 at most); the export
check (:func:`looking_glass.model.onnx_export.export_onnx`) compares them with Keras' anyway.

One more step keeps the saving real in ONNX Runtime: its CPU layout optimiser runs
convolutions and the resize/activation after them in a channel-blocked layout (NCHWc, 8 or 16
channels a block), which would pad the one channel to a whole block and undo the gain. The
one-channel map therefore passes through two reshapes, to (n, 1, h*w) and back to (n, 1, h, w)
(free: no data moves), which the optimiser neither removes nor sees through, so the resize runs
on one plain channel. The resize itself stays the ordinary NCHW Resize with the original scales,
which every execution provider (CUDA, TensorRT) runs as it ran the original graph.

Needs the ``onnx`` package (``pip install 'looking-glass[onnx]'``).
"""

from __future__ import annotations

__all__ = ["head_before_resize"]

_RESIZE_MODES = (b"linear", b"nearest")


def _attributes(node) -> dict:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _static_shapes(model) -> dict:
    """Tensor name -> list of dims (None where not a fixed number), by ONNX shape inference."""
    from onnx import shape_inference

    inferred = shape_inference.infer_shapes(model)
    infos = list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output)
    return {v.name: [d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim]
            for v in infos}


def _head_pattern(conv, nodes, producers, uses, constants, shapes, outputs):
    """(index of the resize node in ``nodes``, its scales, (h, w) of its input) when ``conv`` is a one-channel 1x1
    convolution whose input is only a linear/nearest Resize's output, with constant (1, 1, sy,
    sx) scales and a fixed input size; else None."""
    import numpy as np
    from onnx import numpy_helper

    if conv.op_type != "Conv" or len(conv.input) < 2 or conv.input[1] not in constants:
        return None
    weights = numpy_helper.to_array(constants[conv.input[1]])
    attrs = _attributes(conv)
    if (weights.ndim != 4 or weights.shape[0] != 1 or weights.shape[2:] != (1, 1) or attrs.get("group", 1) != 1
            or any(s != 1 for s in attrs.get("strides", [1, 1])) or any(attrs.get("pads", [0, 0, 0, 0]))
            or attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", b"VALID")):
        return None
    at = producers.get(conv.input[0])
    resize = None if at is None else nodes[at]
    if resize is None or resize.op_type != "Resize" or len(uses.get(resize.output[0], [])) != 1:
        return None
    if resize.output[0] in outputs or _attributes(resize).get("mode", b"nearest") not in _RESIZE_MODES:
        return None
    if len(resize.input) != 3 or resize.input[2] not in constants:  # scales given, no sizes
        return None
    scales = numpy_helper.to_array(constants[resize.input[2]])
    if scales.shape != (4,) or scales[0] != 1 or scales[1] != 1 or not np.all(scales[2:] == np.round(scales[2:])):
        return None
    shape = shapes.get(resize.input[0])
    if not shape or len(shape) != 4 or shape[2] is None or shape[3] is None:
        return None
    return at, scales, (shape[2], shape[3])


def head_before_resize(model) -> int:
    """Rewrite, in place, each ``Resize -> 1x1 Conv (one output channel)`` of the ONNX
    ``model`` (an ``onnx.ModelProto``) into ``1x1 Conv -> Reshape (n, 1, h*w) -> Reshape (n, 1,
    h, w) -> Resize``; returns how many were rewritten (0 leaves the model as it was).

    Only rewrites what is exact in real arithmetic: a convolution with one output channel,
    1x1 kernel, stride 1, no padding, one group; a linear or nearest Resize with constant
    scales of 1 on batch and channels and whole-number scales on the fixed-size image, whose
    output feeds only that convolution. The graph's inputs, outputs and names stay.
    """
    import numpy as np
    from onnx import NodeProto, helper, numpy_helper

    graph = model.graph
    nodes = list(graph.node)
    constants = {t.name: t for t in graph.initializer}
    producers = {out: i for i, node in enumerate(nodes) for out in node.output}
    uses: dict[str, list] = {}
    for node in nodes:
        for name in node.input:
            uses.setdefault(name, []).append(node)
    outputs = {o.name for o in graph.output}
    shapes = _static_shapes(model)

    rewrites = {}  # index of the Resize node -> the nodes that replace Resize + Conv
    convs = set()
    for index, conv in enumerate(nodes):
        found = _head_pattern(conv, nodes, producers, uses, constants, shapes, outputs)
        if found is None:
            continue
        at, _, (h, w) = found
        resize = nodes[at]
        out = conv.output[0]
        low, flat, fenced = f"{out}__low", f"{out}__low_flat", f"{out}__low_fenced"
        graph.initializer.extend([
            numpy_helper.from_array(np.array([-1, 1, h * w], np.int64), f"{out}__flat_shape"),
            numpy_helper.from_array(np.array([-1, 1, h, w], np.int64), f"{out}__low_shape"),
        ])
        new_conv = helper.make_node("Conv", [resize.input[0], *conv.input[1:]], [low], name=conv.name)
        new_conv.attribute.extend(conv.attribute)
        new_resize = helper.make_node("Resize", [fenced, *resize.input[1:]], [out], name=resize.name)
        new_resize.attribute.extend(resize.attribute)
        rewrites[at] = [
            new_conv,
            helper.make_node("Reshape", [low, f"{out}__flat_shape"], [flat], name=f"{out}__flatten"),
            helper.make_node("Reshape", [flat, f"{out}__low_shape"], [fenced], name=f"{out}__unflatten"),
            new_resize,
        ]
        convs.add(index)
    if not rewrites:
        return 0
    rewritten = []
    for index, node in enumerate(nodes):
        if index not in convs:
            for new in rewrites.get(index, [node]):
                kept = NodeProto()  # a copy: the graph's own nodes are cleared below
                kept.CopyFrom(new)
                rewritten.append(kept)
    del graph.node[:]
    graph.node.extend(rewritten)
    return len(rewrites)
