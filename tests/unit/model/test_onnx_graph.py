"""The head-before-upsampling rewrite of the exported ONNX graph (issue 19's speed).

Hand-built graphs check exactly what is and is not rewritten and that the outputs stay the same;
the tiny DeepLab exports check the rewrite on the project's real graphs (both heads).
"""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from looking_glass.model.onnx_graph import head_before_resize  # noqa: E402


def _graph(*, out_channels=1, kernel=1, mode="linear", scales=(1, 1, 4, 4), sizes=False, second_use=False,
           channels=6, size=8, activation="Sigmoid", features=False):
    """Resize (x4) -> Conv -> activation over an (n, channels, size, size) input (``features``:
    after a 3x3 convolution, as in the real decoder); the model."""
    rng = np.random.default_rng(0)
    w = rng.normal(size=(out_channels, channels, kernel, kernel)).astype(np.float32)
    b = rng.normal(size=(out_channels,)).astype(np.float32)
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b"),
             numpy_helper.from_array(np.zeros(0, np.float32), "roi")]
    source = "x"
    if features:
        inits.append(numpy_helper.from_array(rng.normal(size=(channels, channels, 3, 3)).astype(np.float32), "wf"))
        source = "features"
    if sizes:
        inits.append(numpy_helper.from_array(np.array([1, channels, size * 4, size * 4], np.int64), "sizes"))
        resize_inputs = [source, "roi", "", "sizes"]
    else:
        inits.append(numpy_helper.from_array(np.array(scales, np.float32), "scales"))
        resize_inputs = [source, "roi", "scales"]
    nodes = [helper.make_node("Conv", ["x", "wf"], ["features"], name="decoder", pads=[1] * 4)] if features else []
    nodes += [
        helper.make_node("Resize", resize_inputs, ["up"], name="resize", mode=mode,
                         coordinate_transformation_mode="half_pixel"),
        helper.make_node("Conv", ["up", "w", "b"], ["logits"], name="head", kernel_shape=[kernel, kernel],
                         pads=[kernel // 2] * 4),
        helper.make_node(activation, ["logits"], ["y"], name="act"),
    ]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", "c", "h", "w"])]
    if second_use:
        nodes.append(helper.make_node("Relu", ["up"], ["other"], name="other"))
        outputs.append(helper.make_tensor_value_info("other", TensorProto.FLOAT, ["n", "c", "h", "w"]))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                         ["n", channels, size, size])],
                              outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _run(model, x):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(["y"], {"x": x})[0]


@pytest.mark.parametrize("mode", ["linear", "nearest"])
@pytest.mark.parametrize("activation", ["Sigmoid", "Identity"])
def test_the_head_moves_before_the_resize_and_the_outputs_stay(mode, activation):
    model = _graph(mode=mode, activation=activation)
    x = np.random.default_rng(1).normal(size=(3, 6, 8, 8)).astype(np.float32)
    before = _run(model, x)
    assert head_before_resize(model) == 1
    onnx.checker.check_model(model, full_check=True)
    ops = [n.op_type for n in model.graph.node]
    assert ops == ["Conv", "Reshape", "Reshape", "Resize", activation]
    after = _run(model, x)
    assert after.shape == before.shape == (3, 1, 32, 32)
    np.testing.assert_allclose(after, before, rtol=0, atol=2e-6)
    assert [o.name for o in model.graph.output] == ["y"] and model.graph.input[0].name == "x"


@pytest.mark.parametrize("change", [
    {"out_channels": 2},          # not one channel: ORT would pad it to a block anyway
    {"kernel": 3},                # a 3x3 convolution does not commute with resizing at the edges
    {"mode": "cubic"},            # only linear and nearest resizing are rewritten
    {"scales": (1, 2, 4, 4)},     # resizing channels
    {"scales": (1, 1, 2.5, 2.5)},  # not whole-number scales
    {"sizes": True},              # sizes instead of scales
    {"second_use": True},         # the resized map is used elsewhere too
])
def test_graphs_outside_the_pattern_are_left_as_they_are(change):
    model = _graph(**change)
    before = model.SerializeToString()
    assert head_before_resize(model) == 0
    assert model.SerializeToString() == before


def test_a_dynamic_input_size_is_left_as_it_is():
    model = _graph()
    dims = model.graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_param, dims[3].dim_param = "h", "w"
    assert head_before_resize(model) == 0


def test_onnx_runtime_runs_the_moved_head_on_one_channel(tmp_path):
    """The point of the reshapes: ONNX Runtime's CPU layout optimiser must not pad the one-channel
    map to a channel block and resize the block (what made the head cost 30% of the run)."""
    model = _graph(channels=16, size=16, features=True)
    assert head_before_resize(model) == 1
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.optimized_model_filepath = str(tmp_path / "optimised.onnx")
    options.log_severity_level = 3
    ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    optimised = onnx.load(str(tmp_path / "optimised.onnx"))
    resizes = [n for n in optimised.graph.node if n.op_type in ("Resize", "Upsample")]
    assert [(n.domain, n.op_type) for n in resizes] == [("", "Resize")]


@pytest.mark.parametrize("head", ["binary", "sdt"])
def test_the_exported_models_carry_the_rewrite_and_give_the_same_outputs(head):
    pytest.importorskip("tf2onnx")
    import keras

    from looking_glass.model.deeplab import ModelConfig, build_deeplabv3plus
    from looking_glass.model.onnx_export import convert, rewrites_of, sample_tiles

    keras.utils.set_random_seed(0)
    model = build_deeplabv3plus(ModelConfig(alpha=0.35, aspp_filters=8, decoder_filters=8, low_level_filters=8,
                                            input_size=64, head=head))
    plain, rewritten = convert(model, 64, rewrite=False), convert(model, 64)
    assert rewrites_of(plain) == [] and rewrites_of(rewritten) == ["head_before_resize"]
    tiles = sample_tiles(4, 64).astype(np.float32)
    outputs = [ort.InferenceSession(b, providers=["CPUExecutionProvider"]).run(None, {"image": tiles})[0]
               for b in (plain, rewritten)]
    assert outputs[0].shape == outputs[1].shape == (4, 64, 64, 1)
    scale = max(1.0, float(np.abs(outputs[0]).max()))
    np.testing.assert_allclose(outputs[1], outputs[0], rtol=0, atol=1e-5 * scale)
