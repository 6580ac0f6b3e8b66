"""DeepLab V3+ variants at tiny sizes: shapes, heads, output stride 8, config validation, FLOPs.

MobileNetV2 x0.35 at 64 px and Xception at 96 px (its smallest multiple of 32 above Keras'
71 px minimum), with 8-filter ASPP/decoder/skip so that builds and forward passes stay fast.
Each model is built once per module.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from looking_glass.model.deeplab import (  # noqa: E402
    BACKBONE_LAYERS,
    ModelConfig,
    build_deeplabv3plus,
    count_flops,
    model_report,
    profiled_flops,
)
from looking_glass.model.segmenter import SHIPPED_MODEL, UNTRAINED_CONFIG  # noqa: E402

TINY = dict(aspp_filters=8, decoder_filters=8, low_level_filters=8)
MOBILE = dict(backbone="mobilenetv2", alpha=0.35, input_size=64, **TINY)
XCEPTION = dict(backbone="xception", input_size=96, **TINY)

VARIANTS = {
    "mobile_os16_binary": dict(MOBILE),
    "mobile_os8_binary": dict(MOBILE, output_stride=8),
    "mobile_os16_sdt": dict(MOBILE, head="sdt"),
    "mobile_os8_sdt": dict(MOBILE, head="sdt", output_stride=8),
    "xception_os16_binary": dict(XCEPTION),
    "xception_os8_binary": dict(XCEPTION, output_stride=8),
}


@pytest.fixture(scope="module")
def models():
    """{variant: (cfg, model)}, each built once."""
    keras.utils.set_random_seed(0)
    built = {}
    for name, kwargs in VARIANTS.items():
        cfg = ModelConfig(**kwargs)
        built[name] = (cfg, build_deeplabv3plus(cfg))
    return built


def images(n: int, size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (n, size, size, 3)).astype(np.float32)


# --- shapes and heads ---------------------------------------------------------------------------


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_output_is_one_channel_at_input_size(models, variant):
    cfg, model = models[variant]
    assert model.input_shape == (None, cfg.input_size, cfg.input_size, 3)
    assert model.output_shape == (None, cfg.input_size, cfg.input_size, 1)
    out = np.asarray(model(images(2, cfg.input_size), training=False))
    assert out.shape == (2, cfg.input_size, cfg.input_size, 1)
    assert np.isfinite(out).all()


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_aspp_runs_at_the_output_stride_with_the_papers_rates(models, variant):
    cfg, model = models[variant]
    size = cfg.input_size // cfg.output_stride
    rates = (6, 12, 18) if cfg.output_stride == 16 else (12, 24, 36)
    assert cfg.aspp_rates == rates
    for rate in rates:
        layer = model.get_layer(f"aspp_rate{rate}_conv")
        assert tuple(layer.dilation_rate) == (rate, rate)
        assert layer.output.shape[1:3] == (size, size)
    # the decoder concatenates at stride 4
    assert model.get_layer("decoder_concat").output.shape[1:3] == (cfg.input_size // 4,) * 2


@pytest.mark.parametrize("variant", ["mobile_os16_binary", "mobile_os8_binary", "xception_os8_binary"])
def test_binary_head_is_a_probability(models, variant):
    cfg, model = models[variant]
    out = np.asarray(model(images(2, cfg.input_size, seed=1), training=False))
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert model.layers[-1].name == "building_prob"


def _head_input_and_output(model, x):
    """(features entering the last 1x1 conv, model output) for x."""
    features = keras.Model(model.input, model.layers[-1].input)(x, training=False)
    return np.asarray(features), np.asarray(model(x, training=False))


@pytest.mark.parametrize("variant", ["mobile_os16_sdt", "mobile_os8_sdt"])
def test_sdt_head_is_linear(models, variant):
    cfg, model = models[variant]
    head = model.layers[-1]
    assert head.name == "signed_distance_m"
    assert head.get_config()["activation"] == "linear"
    features, out = _head_input_and_output(model, images(1, cfg.input_size))
    kernel, bias = head.get_weights()
    np.testing.assert_allclose(out, features @ kernel[0, 0] + bias, rtol=1e-4, atol=1e-5)


def test_binary_head_is_the_sigmoid_of_the_same_map(models):
    cfg, model = models["mobile_os16_binary"]
    features, out = _head_input_and_output(model, images(1, cfg.input_size))
    kernel, bias = model.layers[-1].get_weights()
    np.testing.assert_allclose(out, 1 / (1 + np.exp(-(features @ kernel[0, 0] + bias))), rtol=1e-4, atol=1e-6)


# --- output stride 8 ----------------------------------------------------------------------------


@pytest.mark.parametrize("backbone", ["mobile", "xception"])
def test_os8_has_the_os16_weights(models, backbone):
    _, m16 = models[f"{backbone}_os16_binary"]
    _, m8 = models[f"{backbone}_os8_binary"]
    assert [tuple(w.shape) for w in m16.weights] == [tuple(w.shape) for w in m8.weights]
    assert m16.count_params() == m8.count_params()


def test_os8_is_the_dilated_os16_backbone(models):
    """Atrous algorithm: with shared weights, the OS-8 high-level map sampled at odd positions
    is the OS-16 map exactly (MobileNetV2's stride-2 step, pad (0, 1) + valid, centres output i
    on input 2i + 1)."""
    _, m16 = models["mobile_os16_binary"]
    _, m8 = models["mobile_os8_binary"]
    m16, original = keras.models.clone_model(m16), m16
    m16.set_weights(original.get_weights())
    # Random-init activations are ~1e-6; shrink the BN variances so that they are O(1).
    for layer in m16.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([gamma, beta, mean, var * 0.05])
    m8 = keras.models.clone_model(m8)
    m8.set_weights(m16.get_weights())
    name = BACKBONE_LAYERS["mobilenetv2"][0]
    x = images(2, 64, seed=3)
    f16 = np.asarray(keras.Model(m16.input, m16.get_layer(name).output)(x))
    f8 = np.asarray(keras.Model(m8.input, m8.get_layer(name).output)(x))
    assert f16.shape[:3] == (2, 4, 4) and f8.shape[:3] == (2, 8, 8)
    assert np.abs(f16).max() > 0.1
    np.testing.assert_allclose(f8[:, 1::2, 1::2], f16, rtol=1e-5, atol=1e-5)
    assert np.abs(f8[:, ::2, ::2] - f16).max() > 1e-3  # the other positions are new samples


def test_os8_dilates_only_after_the_removed_stride(models):
    _, model = models["mobile_os8_binary"]
    assert tuple(model.get_layer("block_6_depthwise").strides) == (1, 1)
    assert tuple(model.get_layer("block_6_depthwise").dilation_rate) == (1, 1)
    assert tuple(model.get_layer("block_5_depthwise").dilation_rate) == (1, 1)
    for block in range(7, 13):
        assert tuple(model.get_layer(f"block_{block}_depthwise").dilation_rate) == (2, 2)
    _, xmodel = models["xception_os8_binary"]
    assert tuple(xmodel.get_layer("block4_pool").strides) == (1, 1)
    assert tuple(xmodel.get_layer("block5_sepconv1").dilation_rate) == (2, 2)
    assert tuple(xmodel.get_layer("block4_sepconv1").dilation_rate) == (1, 1)


def test_dilated_model_saves_and_loads(models, tmp_path):
    cfg, model = models["mobile_os8_binary"]
    path = tmp_path / "os8.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, compile=False)
    x = images(1, cfg.input_size, seed=4)
    np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(model(x)), rtol=1e-5, atol=1e-6)


# --- configuration ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, reason",
    [
        (dict(backbone="resnet50"), "unknown backbone 'resnet50'"),
        (dict(head="mask"), "unknown head 'mask'"),
        (dict(output_stride=4), "output_stride must be one of"),
        (dict(output_stride=32), "output_stride must be one of"),
        (dict(input_size=100), "multiple of 32"),
        (dict(input_size=0), "multiple of 32"),
        (dict(backbone="xception", input_size=64), "too small for xception"),
        (dict(alpha=0.4), "not a MobileNetV2 width multiplier"),
        (dict(backbone="xception", alpha=0.5), "alpha applies to MobileNetV2 only"),
        (dict(aspp_filters=0), "aspp_filters must be a positive integer"),
        (dict(decoder_filters=2.5), "decoder_filters must be a positive integer"),
        (dict(imagenet="yes"), "imagenet must be True or False"),
    ],
)
def test_bad_configs_say_why(kwargs, reason):
    with pytest.raises(ValueError, match=reason):
        ModelConfig(**kwargs)


def test_configs_old_and_new_round_trip():
    assert ModelConfig(**UNTRAINED_CONFIG).output_stride == 16
    old = {"backbone": "mobilenetv2", "alpha": 0.35, "aspp_filters": 64, "decoder_filters": 64,
           "head": "binary", "input_size": 256, "imagenet": False}  # a sidecar written before OS 8
    cfg = ModelConfig(**old)
    assert (cfg.output_stride, cfg.low_level_filters) == (16, 48)
    assert ModelConfig(**json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert ModelConfig(backbone="xception", input_size=96, output_stride=8).aspp_rates == (12, 24, 36)


# --- size and cost ------------------------------------------------------------------------------


def test_count_flops_by_hand():
    inp = keras.Input((8, 8, 4))
    x = keras.layers.Conv2D(6, 3, strides=2, padding="same")(inp)  # 2*3*3*4*6 * 4*4 = 6912
    x = keras.layers.DepthwiseConv2D(3, padding="same", dilation_rate=2)(x)  # 2*3*3*6 * 4*4 = 1728
    x = keras.layers.SeparableConv2D(5, 3, padding="same")(x)  # 1728 + 2*6*5 * 16 = 2688
    x = keras.layers.BatchNormalization()(x)  # not counted
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(3)(x)  # 2*5*3 = 30
    model = keras.Model(inp, x)
    assert count_flops(model) == 6912 + 1728 + 2688 + 30


def test_model_report(models):
    reports = {name: model_report(cfg, model) for name, (cfg, model) in models.items()}
    for name, report in reports.items():
        cfg, model = models[name]
        assert report["params"] == model.count_params() > 0
        assert 0 < report["trainable_params"] < report["params"]  # BN moving statistics
        assert report["flops"] > 0 and report["input_size"] == cfg.input_size
    for backbone in ("mobile", "xception"):
        assert reports[f"{backbone}_os8_binary"]["flops"] > reports[f"{backbone}_os16_binary"]["flops"]
        assert reports[f"{backbone}_os8_binary"]["params"] == reports[f"{backbone}_os16_binary"]["params"]
    assert reports["xception_os16_binary"]["params"] > reports["mobile_os16_binary"]["params"]


def test_analytic_flops_agree_with_the_profiler(models):
    """TensorFlow's profiler counts the same convolutions: exactly for the undilated backbone;
    for the whole model it also counts the padding SpaceToBatchND adds around dilated ones
    (large for the ASPP's rates on a 4 px map), so never less; and with the element-wise ops
    (batch norm, scaling, residual additions) more still."""
    pytest.importorskip("tensorflow")
    cfg, model = models["mobile_os16_binary"]
    backbone = keras.Model(model.input, model.get_layer(BACKBONE_LAYERS["mobilenetv2"][0]).output)
    assert count_flops(backbone) == profiled_flops(backbone, convolutions_only=True) > 0
    assert count_flops(model) < profiled_flops(model)


def test_model_report_builds_when_not_given_a_model():
    report = model_report(ModelConfig(**dict(MOBILE, input_size=32)))
    assert report["params"] > 0 and report["flops"] > 0 and report["input_size"] == 32


# --- the shipped model --------------------------------------------------------------------------


def test_shipped_model_still_loads():
    if not SHIPPED_MODEL.exists():
        pytest.skip(f"{SHIPPED_MODEL.name} is not in the package")
    model = keras.saving.load_model(SHIPPED_MODEL, compile=False)
    sidecar = SHIPPED_MODEL.with_suffix(".json")
    if sidecar.exists():
        cfg = ModelConfig(**json.loads(sidecar.read_text())["config"])
        assert model.output_shape == (None, cfg.input_size, cfg.input_size, 1)
        rebuilt = build_deeplabv3plus(cfg)  # today's code builds the same architecture
        assert [tuple(w.shape) for w in rebuilt.weights] == [tuple(w.shape) for w in model.weights]
    out = np.asarray(model(images(1, model.input_shape[1]), training=False))
    assert out.shape == (1, model.input_shape[1], model.input_shape[2], 1)


def test_accelerated_segmenter_keeps_the_weights_and_the_masks():
    """Mixed precision rebuilds the model under mixed_float16 and copies the weights; XLA
    compiles prediction. Both must give (nearly) the plain model's masks."""
    import keras
    import numpy as np

    from looking_glass.model.deeplab import ModelConfig, build_deeplabv3plus
    from looking_glass.model.segmenter import ModelInfo, Segmenter

    keras.utils.set_random_seed(3)
    config = dict(alpha=0.35, aspp_filters=8, decoder_filters=8, input_size=64)
    plain = Segmenter(build_deeplabv3plus(ModelConfig(**config)), ModelInfo("t", "0", False, "test"), config)
    images = np.random.default_rng(0).integers(0, 255, (2, 64, 64, 3)).astype(np.uint8)
    probabilities = np.asarray(plain.model.predict_on_batch(images.astype(np.float32)))
    threshold = float(np.median(probabilities))
    reference = plain.predict_masks(images, threshold)
    mixed = plain.accelerated(mixed_precision=True)
    assert any(layer.dtype_policy.name == "mixed_float16" for layer in mixed.model.layers)
    assert mixed.model.layers[-1].dtype_policy.name == "float32"  # the output stays float32
    assert (mixed.predict_masks(images, threshold) == reference).mean() > 0.98
    xla = plain.accelerated(xla=True)
    assert (xla.predict_masks(images, threshold) == reference).mean() > 0.999
    assert plain.model.dtype_policy.name == "float32"  # the original is untouched
