"""DeepLab V3+ (Chen et al., 2018) in Keras 3, built functionally.

Encoder: a ``keras.applications`` backbone cut at output stride 16, then atrous spatial pyramid
pooling (1x1, three dilated 3x3 and image pooling). Decoder: upsample x4, concatenate the
stride-4 low-level features reduced to 48 channels, two 3x3 convolutions, upsample x4 to the
input size. Heads: ``binary`` (sigmoid building probability) or ``sdt`` (linear, metres).

Imports TensorFlow/Keras; the Lambda never imports this module.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import keras
from keras import layers

from .grid import TILE_SIZE

# Backbone feature layers: (stride-16 high-level, stride-4 low-level).
BACKBONE_LAYERS = {
    "mobilenetv2": ("block_13_expand_relu", "block_3_expand_relu"),
}


@dataclass(frozen=True)
class ModelConfig:
    backbone: str = "mobilenetv2"
    alpha: float = 1.0  # MobileNetV2 width multiplier
    aspp_filters: int = 256
    decoder_filters: int = 256
    head: str = "binary"  # or "sdt"
    input_size: int = TILE_SIZE
    imagenet: bool = False  # ImageNet weights when available; never required

    def to_dict(self) -> dict:
        return asdict(self)


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


def _backbone(cfg: ModelConfig, inputs):
    if cfg.backbone != "mobilenetv2":
        raise ValueError(f"unknown backbone {cfg.backbone!r}; choose from {sorted(BACKBONE_LAYERS)}")
    weights = None
    if cfg.imagenet:
        weights = "imagenet"
    try:
        base = keras.applications.MobileNetV2(
            input_tensor=inputs, include_top=False, weights=weights, alpha=cfg.alpha
        )
    except Exception:  # offline or no cached weights: random initialisation, never a failure
        base = keras.applications.MobileNetV2(
            input_tensor=inputs, include_top=False, weights=None, alpha=cfg.alpha
        )
    high, low = BACKBONE_LAYERS[cfg.backbone]
    return base.get_layer(high).output, base.get_layer(low).output


def build_deeplabv3plus(cfg: ModelConfig = ModelConfig()) -> keras.Model:
    """The model takes uint8-range RGB (0..255, float) and scales it itself."""
    inputs = keras.Input((cfg.input_size, cfg.input_size, 3), name="image")
    scaled = layers.Rescaling(1 / 127.5, offset=-1.0, name="scale")(inputs)  # MobileNetV2's range
    high, low = _backbone(cfg, scaled)

    x = _aspp(high, cfg.aspp_filters)
    x = layers.UpSampling2D(size=4, interpolation="bilinear", name="decoder_up4")(x)
    skip = _conv_bn_relu(low, 48, 1, name="decoder_skip")
    x = layers.Concatenate(name="decoder_concat")([x, skip])
    x = _conv_bn_relu(x, cfg.decoder_filters, 3, name="decoder_conv1")
    x = _conv_bn_relu(x, cfg.decoder_filters, 3, name="decoder_conv2")
    x = layers.UpSampling2D(size=4, interpolation="bilinear", name="output_up4")(x)
    if cfg.head == "binary":
        outputs = layers.Conv2D(1, 1, activation="sigmoid", dtype="float32", name="building_prob")(x)
    elif cfg.head == "sdt":
        outputs = layers.Conv2D(1, 1, activation=None, dtype="float32", name="signed_distance_m")(x)
    else:
        raise ValueError(f"unknown head {cfg.head!r}; choose 'binary' or 'sdt'")
    return keras.Model(inputs, outputs, name=f"deeplabv3plus_{cfg.backbone}_{cfg.head}")
