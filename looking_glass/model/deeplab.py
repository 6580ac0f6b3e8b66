"""DeepLab V3+ (Chen et al., 2018) in Keras 3, built functionally.

Encoder: a ``keras.applications`` backbone (MobileNetV2 or Xception) at output stride 16 or 8,
then atrous spatial pyramid pooling (1x1, three dilated 3x3 and image pooling).
Decoder: upsample to stride 4, concatenate the stride-4 low-level features reduced to 48
channels, two 3x3 convolutions, upsample x4 to the input size. Heads: ``binary`` (sigmoid
building probability) or ``sdt`` (linear signed distance, metres, positive inside buildings).

Output stride 16 takes the backbone's own stride-16 feature map (the layers after it are not
used). Output stride 8 is the paper's atrous encoder, not a shallower cut: ``keras.applications``
models have fixed strides, so the backbone is re-built (``keras.models.clone_model`` with edited
layer configs, see :func:`dilation_plan`) with its stride-16 step set to stride 1 and every later
convolution dilated x2. The same layer as at OS 16 then gives the high-level features, at
stride 8: the OS-8 model has exactly the OS-16 model's weights (same shapes, same order; with
``imagenet`` they are copied over), so OS-16-trained weights load into it (``set_weights``), as
the paper trains at OS 16 and evaluates at OS 8. As the paper does at OS 8, the ASPP rates are
doubled, (6, 12, 18) -> (12, 24, 36). On 256 px tiles the ASPP map is 16 (OS 16) or 32 (OS 8)
px, so the largest rates mostly sample the zero padding (a 3x3 kernel dilated 18 on a 16 px map
is in effect a 1x1); the rates are kept as published.

Feature layers (:data:`FEATURE_LAYERS`), each the deepest map at its stride, just before the
backbone's next stride-2 step:

=============  ========================  =====================================
backbone       low level (stride 4)      high level (stride 16; 8 when dilated)
=============  ========================  =====================================
mobilenetv2    block_3_expand_relu       block_13_expand_relu
xception       block3_sepconv2_bn        block13_sepconv2_bn
=============  ========================  =====================================

Keras' Xception uses "valid" padding in its first two convolutions, so its stride-4 map is 63
px for a 256 px input (not 64); it is resized (bilinear) to input/4 before the decoder
concatenation. Its stride-8 and stride-16 maps are exact for inputs that are multiples of 32.

FLOPs (:func:`model_report`) are counted analytically, see :func:`count_flops`.

Imports TensorFlow/Keras; the Lambda never imports this module.
"""

from __future__ import annotations

import math

import keras
from keras import layers

from looking_glass.model.config import (  # noqa: F401 - re-exported: the model's config lives there, without Keras
    ASPP_RATES,
    BACKBONES,
    HEADS,
    MIN_INPUT_SIZE,
    MOBILENETV2_ALPHAS,
    OUTPUT_STRIDES,
    ModelConfig,
)

# Backbone feature layers by their stride in the unmodified backbone: 4 is the decoder's
# low-level skip, 16 feeds the ASPP (at stride 8 in the dilated OS-8 backbone).
FEATURE_LAYERS = {
    "mobilenetv2": {4: "block_3_expand_relu", 16: "block_13_expand_relu"},
    "xception": {4: "block3_sepconv2_bn", 16: "block13_sepconv2_bn"},
}
# Backward compatible: (stride-16 high-level, stride-4 low-level).
BACKBONE_LAYERS = {name: (by_stride[16], by_stride[4]) for name, by_stride in FEATURE_LAYERS.items()}


def _conv_bn_relu(x, filters: int, kernel: int, dilation: int = 1, name: str = ""):
    x = layers.Conv2D(
        filters, kernel, padding="same", dilation_rate=dilation, use_bias=False, name=f"{name}_conv"
    )(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def _aspp(x, filters: int, rates=(6, 12, 18)):
    size = x.shape[1]
    pooled = layers.GlobalAveragePooling2D(keepdims=True, name="aspp_pool")(x)
    pooled = _conv_bn_relu(pooled, filters, 1, name="aspp_pool_proj")
    pooled = layers.UpSampling2D(size=(size, size), interpolation="bilinear", name="aspp_pool_up")(pooled)
    branches = [pooled, _conv_bn_relu(x, filters, 1, name="aspp_1x1")]
    branches += [_conv_bn_relu(x, filters, 3, dilation=r, name=f"aspp_rate{r}") for r in rates]
    x = layers.Concatenate(name="aspp_concat")(branches)
    return _conv_bn_relu(x, filters, 1, name="aspp_proj")


def _application(cfg: ModelConfig, inputs, weights):
    if cfg.backbone == "mobilenetv2":
        return keras.applications.MobileNetV2(
            input_tensor=inputs, include_top=False, weights=weights, alpha=cfg.alpha
        )
    return keras.applications.Xception(input_tensor=inputs, include_top=False, weights=weights)


def _backbone(cfg: ModelConfig, inputs):
    """(high-level features at cfg.output_stride, low-level features at stride 4)."""
    cfg.validate()
    weights = "imagenet" if cfg.imagenet else None
    if cfg.output_stride == 16:  # the backbone's own stride-16 map: no surgery, layers in-line
        base = None
        if weights:
            try:
                base = _application(cfg, inputs, weights)
            except Exception:  # offline or no cached weights: random initialisation, never a failure
                base = None
        if base is None:
            base = _application(cfg, inputs, None)
    else:
        base = _dilated_backbone(cfg, inputs, weights)
    names = FEATURE_LAYERS[cfg.backbone]
    return base.get_layer(names[16]).output, base.get_layer(names[4]).output


def _strides(base, size: int) -> dict:
    """{layer name: (input stride, output stride)} for single-input layers of a backbone."""
    out = {}
    for layer in base.layers:
        try:
            shape_in, shape_out = layer.input.shape, layer.output.shape
        except (AttributeError, ValueError):
            continue
        if len(shape_in) != 4 or len(shape_out) != 4:
            continue
        out[layer.name] = tuple(2 ** round(math.log2(size / int(s[1]))) for s in (shape_in, shape_out))
    return out


def dilation_plan(base, size: int, output_stride: int) -> dict:
    """Config changes that turn a backbone of strides ..., 16, 32 into one that stops at
    ``output_stride`` and keeps its later layers' receptive fields with atrous convolution.

    Every layer that halves a map at or beyond ``output_stride`` gets stride 1 (a
    ``ZeroPadding2D`` + ``valid`` pair, as MobileNetV2's strided depthwise convolutions, becomes
    no padding + ``same``); every convolution with a kernel > 1 whose input was at stride
    ``r > output_stride`` gets dilation ``r / output_stride``.
    """
    strides = _strides(base, size)
    plan: dict[str, dict] = {}
    for layer in base.layers:
        if layer.name not in strides:
            continue
        s_in, _ = strides[layer.name]
        if s_in < output_stride:
            continue
        change = {}
        if isinstance(layer, layers.ZeroPadding2D):
            change["padding"] = ((0, 0), (0, 0))
        layer_strides = getattr(layer, "strides", None)
        if layer_strides is not None and tuple(layer_strides) != (1, 1):
            change["strides"] = (1, 1)
            if getattr(layer, "padding", None) == "valid":
                change["padding"] = "same"
        kernel = getattr(layer, "kernel_size", None)
        if s_in > output_stride and hasattr(layer, "dilation_rate") and kernel and max(kernel) > 1:
            change["dilation_rate"] = (s_in // output_stride,) * 2
        if change:
            plan[layer.name] = change
    return plan


def _dilated_backbone(cfg: ModelConfig, inputs, weights):
    """The backbone re-built with its stride-16 step removed and later layers dilated (x2), so
    that the layer named for stride 16 runs at stride 8; weights copied from the original."""
    shape = (cfg.input_size, cfg.input_size, 3)
    base = None
    if weights:
        try:
            base = _application(cfg, keras.Input(shape), weights)
        except Exception:  # offline or no cached weights: random initialisation, never a failure
            base = None
    if base is None:
        weights, base = None, _application(cfg, keras.Input(shape), None)
    plan = dilation_plan(base, cfg.input_size, cfg.output_stride)

    def clone(layer):
        config = layer.get_config()
        config.update(plan.get(layer.name, {}))
        return layer.__class__.from_config(config)

    structured = [inputs] if isinstance(base.input, (list, tuple)) else inputs
    dilated = keras.models.clone_model(base, input_tensors=structured, clone_function=clone)
    if weights:
        for layer in base.layers:
            if layer.weights:
                dilated.get_layer(layer.name).set_weights(layer.get_weights())
    return dilated


def _align(x, size: int, name: str):
    """Resize x (bilinear) to size x size if it is not already (Xception's stride-4 map)."""
    if x.shape[1] == size and x.shape[2] == size:
        return x
    return layers.Resizing(size, size, interpolation="bilinear", name=name)(x)


def build_deeplabv3plus(cfg: ModelConfig = ModelConfig()) -> keras.Model:
    """The model takes uint8-range RGB (0..255, float) and scales it itself to [-1, 1]
    (both backbones' ImageNet preprocessing)."""
    cfg.validate()
    inputs = keras.Input((cfg.input_size, cfg.input_size, 3), name="image")
    scaled = layers.Rescaling(1 / 127.5, offset=-1.0, name="scale")(inputs)
    high, low = _backbone(cfg, scaled)
    if high.shape[1] != cfg.input_size // cfg.output_stride:  # exact for multiples of 32
        raise RuntimeError(f"high-level features are {high.shape[1]} px, expected {cfg.input_size // cfg.output_stride}")
    low = _align(low, cfg.input_size // 4, "low_level_align")

    x = _aspp(high, cfg.aspp_filters, cfg.aspp_rates)
    up = cfg.output_stride // 4
    x = layers.UpSampling2D(size=up, interpolation="bilinear", name=f"decoder_up{up}")(x)
    skip = _conv_bn_relu(low, cfg.low_level_filters, 1, name="decoder_skip")
    x = layers.Concatenate(name="decoder_concat")([x, skip])
    x = _conv_bn_relu(x, cfg.decoder_filters, 3, name="decoder_conv1")
    x = _conv_bn_relu(x, cfg.decoder_filters, 3, name="decoder_conv2")
    x = layers.UpSampling2D(size=4, interpolation="bilinear", name="output_up4")(x)
    if cfg.head == "binary":
        outputs = layers.Conv2D(1, 1, activation="sigmoid", dtype="float32", name="building_prob")(x)
    else:  # "sdt", validated above
        outputs = layers.Conv2D(1, 1, activation=None, dtype="float32", name="signed_distance_m")(x)
    name = f"deeplabv3plus_{cfg.backbone}_{cfg.head}"
    if cfg.output_stride != 16:
        name += f"_os{cfg.output_stride}"
    return keras.Model(inputs, outputs, name=name)


# --- size and cost -----------------------------------------------------------------------------


def _flat_layers(model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _flat_layers(layer)
        else:
            yield layer


def _spatial(shape) -> int:
    n = 1
    for d in shape[1:-1]:
        n *= int(d)
    return n


def layer_flops(layer) -> int:
    """Analytic FLOPs of one layer for one input (batch 1); 0 for layers not counted."""
    if isinstance(layer, layers.SeparableConv2D):
        kh, kw = layer.kernel_size
        cin, out = int(layer.input.shape[-1]), layer.output.shape
        hw = _spatial(out)
        mult = layer.depth_multiplier
        return 2 * kh * kw * cin * mult * hw + 2 * cin * mult * int(out[-1]) * hw
    if isinstance(layer, layers.DepthwiseConv2D):
        kh, kw = layer.kernel_size
        cin, out = int(layer.input.shape[-1]), layer.output.shape
        return 2 * kh * kw * cin * layer.depth_multiplier * _spatial(out)
    if isinstance(layer, layers.Conv2DTranspose):
        kh, kw = layer.kernel_size
        cin = int(layer.input.shape[-1])
        return 2 * kh * kw * cin * layer.filters * _spatial(layer.input.shape)
    if isinstance(layer, layers.Conv2D):
        kh, kw = layer.kernel_size
        cin, out = int(layer.input.shape[-1]), layer.output.shape
        return 2 * kh * kw * (cin // layer.groups) * int(out[-1]) * _spatial(out)
    if isinstance(layer, layers.Dense):
        shape = layer.input.shape
        rows = 1
        for d in shape[1:-1]:
            rows *= int(d)
        return 2 * rows * int(shape[-1]) * layer.units
    return 0


def count_flops(model) -> int:
    """Analytic FLOPs of one forward pass for one input (batch 1): the method of model_report.

    A multiply-add is 2 FLOPs. Counted: Conv2D ``2*kh*kw*(cin/groups)*cout*Ho*Wo``,
    DepthwiseConv2D ``2*kh*kw*cin*multiplier*Ho*Wo``, SeparableConv2D as its depthwise plus
    pointwise parts, Conv2DTranspose ``2*kh*kw*cin*cout*Hin*Win`` and Dense
    ``2*in*out`` per row. Dilation does not change the count. Not counted: biases, batch norm
    (foldable into the convolutions), activations, pooling, resizing and concatenation, which
    together are a few per cent at most. TensorFlow's profiler (:func:`profiled_flops` with
    ``convolutions_only``) agrees exactly for undilated convolutions but counts a dilated one on
    the map padded by SpaceToBatchND to a multiple of its rate, so it reports more for the ASPP
    (and the OS-8 backbone) than the arithmetic needs.
    """
    return int(sum(layer_flops(layer) for layer in _flat_layers(model)))


def profiled_flops(model, convolutions_only: bool = False) -> int:
    """FLOPs of one forward pass (batch 1) from TensorFlow's graph profiler, as a cross-check.

    Freezes the inference graph of a concrete function and asks ``tf.compat.v1.profiler`` for
    its float operations (TensorFlow backend only; slower). The profiler also counts
    element-wise ops (batch norm's multiply and add, the input scaling, residual additions);
    ``convolutions_only`` keeps Conv2D, DepthwiseConv2dNative and MatMul, the ops
    :func:`count_flops` counts.
    """
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    spec = tf.TensorSpec([1, *model.input_shape[1:]], tf.float32)
    concrete = tf.function(lambda x: model(x, training=False)).get_concrete_function(spec)
    frozen = convert_variables_to_constants_v2(concrete)
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    if convolutions_only:
        options["account_type_regexes"] = ["Conv2D", "DepthwiseConv2dNative", "MatMul"]
    info = tf.compat.v1.profiler.profile(graph=frozen.graph, options=options)
    return int(info.total_float_ops)


def model_report(cfg: ModelConfig, model: keras.Model | None = None) -> dict:
    """Size and cost of the model for ``cfg``: parameters and FLOPs for one input tile.

    The tile is ``cfg.input_size`` square (256 px, one map tile, by default). FLOPs are the
    analytic count of :func:`count_flops` (convolutions and dense layers, a multiply-add = 2).
    Pass ``model`` to skip building it (it must have been built from ``cfg``).
    """
    cfg.validate()
    if model is None:
        model = build_deeplabv3plus(cfg)
    trainable = int(sum(math.prod(w.shape) for w in model.trainable_weights))
    flops = count_flops(model)
    return {
        "name": model.name,
        "backbone": cfg.backbone,
        "alpha": cfg.alpha,
        "output_stride": cfg.output_stride,
        "head": cfg.head,
        "input_size": cfg.input_size,
        "params": int(model.count_params()),
        "trainable_params": trainable,
        "flops": flops,
        "gflops": flops / 1e9,
        "flops_method": "analytic: 2*k*k*cin*cout*H*W per conv (depthwise 2*k*k*c*H*W), dense 2*in*out",
    }

