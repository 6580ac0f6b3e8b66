"""The model's hyper-parameters (:class:`ModelConfig`) and what they may be, without Keras.

:mod:`looking_glass.model.deeplab` builds the model from a :class:`ModelConfig` (and re-exports
these names); the hyperparameter checks of ``train`` read them from here, so a bad combination
is refused before TensorFlow is imported or anything is staged.
"""

from __future__ import annotations

import numbers
from dataclasses import asdict, dataclass

from looking_glass.grid import TILE_SIZE

__all__ = ["ASPP_RATES", "BACKBONES", "HEADS", "MIN_INPUT_SIZE", "MOBILENETV2_ALPHAS", "OUTPUT_STRIDES", "ModelConfig"]

BACKBONES = ("mobilenetv2", "xception")
HEADS = ("binary", "sdt")
OUTPUT_STRIDES = (8, 16)
# Width multipliers keras.applications.MobileNetV2 has ImageNet weights for.
MOBILENETV2_ALPHAS = (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)
# Smallest input each backbone accepts (keras.applications' own minimum).
MIN_INPUT_SIZE = {"mobilenetv2": 32, "xception": 71}
ASPP_RATES = {16: (6, 12, 18), 8: (12, 24, 36)}

@dataclass(frozen=True)
class ModelConfig:
    """Model hyper-parameters. Invalid values raise ``ValueError`` at construction.

    ``to_dict()`` is stored in model sidecars; ``ModelConfig(**d)`` reads it back (configs
    written before ``output_stride``/``low_level_filters`` existed get their defaults).
    """

    backbone: str = "mobilenetv2"  # or "xception"
    alpha: float = 1.0  # MobileNetV2 width multiplier (must stay 1.0 for Xception)
    aspp_filters: int = 256
    decoder_filters: int = 256
    head: str = "binary"  # or "sdt"
    input_size: int = TILE_SIZE
    imagenet: bool = False  # ImageNet weights when available; never required
    output_stride: int = 16  # or 8 (backbone's stride-16 step removed, later layers dilated x2)
    low_level_filters: int = 48  # channels of the decoder's stride-4 skip projection

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the first field that does not describe a buildable model."""
        if self.backbone not in BACKBONES:
            raise ValueError(f"unknown backbone {self.backbone!r}; choose from {list(BACKBONES)}")
        if self.head not in HEADS:
            raise ValueError(f"unknown head {self.head!r}; choose from {list(HEADS)}")
        if self.output_stride not in OUTPUT_STRIDES:
            raise ValueError(f"output_stride must be one of {list(OUTPUT_STRIDES)}, got {self.output_stride!r}")
        if self.backbone == "mobilenetv2":
            if not any(_close(self.alpha, a) for a in MOBILENETV2_ALPHAS):
                raise ValueError(
                    f"alpha {self.alpha!r} is not a MobileNetV2 width multiplier; choose from {list(MOBILENETV2_ALPHAS)}"
                )
        elif not _close(self.alpha, 1.0):
            raise ValueError(f"alpha applies to MobileNetV2 only; {self.backbone} needs alpha=1.0, got {self.alpha!r}")
        size = self.input_size
        if not _is_int(size) or size <= 0 or size % 32:
            raise ValueError(f"input_size must be a positive multiple of 32, got {size!r}")
        if size < MIN_INPUT_SIZE[self.backbone]:
            raise ValueError(
                f"input_size {size} is too small for {self.backbone} "
                f"(needs >= {MIN_INPUT_SIZE[self.backbone]} px, i.e. >= {_round_up(MIN_INPUT_SIZE[self.backbone], 32)} "
                "as a multiple of 32)"
            )
        for name in ("aspp_filters", "decoder_filters", "low_level_filters"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(self.imagenet, bool):
            raise ValueError(f"imagenet must be True or False, got {self.imagenet!r}")

    @property
    def aspp_rates(self) -> tuple[int, int, int]:
        """The ASPP atrous rates for this output stride (6, 12, 18 at 16; doubled at 8)."""
        return ASPP_RATES[self.output_stride]

    def to_dict(self) -> dict:
        """The fields as a JSON-able dict (what model sidecars store)."""
        return asdict(self)


def _close(a, b) -> bool:
    try:
        return abs(float(a) - b) < 1e-9
    except (TypeError, ValueError):
        return False


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple
