"""Loading a segmentation model and turning tile images into building masks and areas.

A model is a Keras file plus a JSON sidecar (``<name>.json``, :mod:`looking_glass.model.sidecar`)
with its id, version, config and whether it was trained. With no model path, the model shipped in
the package is used if there is one; otherwise an untrained DeepLab V3+ with random weights, and
the metadata says so.
"""

from __future__ import annotations

import importlib.resources
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from looking_glass.grid import pixel_row_areas_m2
from looking_glass.model.sidecar import sidecar_path

SHIPPED_MODEL = Path(str(importlib.resources.files("looking_glass.model") / "shipped" / "deeplabv3plus_synthetic.keras"))
# The untrained fallback: small, so the pipeline runs quickly until a trained model exists.
UNTRAINED_CONFIG = {"alpha": 0.35, "aspp_filters": 64, "decoder_filters": 64}


@dataclass
class ModelInfo:
    """What the sidecar says about a model: id, version, whether it was trained, a description,
    its head and the probability threshold of a building pixel."""

    model_id: str
    version: str
    trained: bool
    description: str
    head: str = "binary"
    threshold: float = 0.5


def load_metadata(model_path: Path) -> dict:
    """The model's sidecar (:func:`looking_glass.model.sidecar.sidecar_path`) as a dict; raises
    FileNotFoundError when it is missing and ValueError when it is not JSON."""
    sidecar = sidecar_path(model_path)
    if not sidecar.exists():
        raise FileNotFoundError(f"model metadata {sidecar} not found (expected next to the model)")
    return json.loads(sidecar.read_text())


class Segmenter:
    """Runs the model on batches of uint8 RGB tiles."""

    def __init__(self, model, info: ModelInfo, config: dict | None = None):
        self.model = model
        self.info = info
        self.config = config or {}  # the ModelConfig fields, from the sidecar

    @classmethod
    def load(cls, model_path: str = "") -> "Segmenter":
        """The Keras model at ``model_path`` with its sidecar; "" means the shipped model, or an
        untrained DeepLab V3+ (``UNTRAINED_CONFIG``) when none is shipped."""
        import keras

        path = Path(model_path) if model_path else SHIPPED_MODEL
        if path.exists():
            meta = load_metadata(path)
            model = keras.saving.load_model(path, compile=False)
            info = ModelInfo(
                model_id=meta["model_id"],
                version=str(meta["version"]),
                trained=bool(meta.get("trained", True)),
                description=meta.get("description", ""),
                head=meta.get("config", {}).get("head", "binary"),
                threshold=float(meta.get("threshold", 0.5)),
            )
            return cls(model, info, meta.get("config", {}))
        if model_path:
            raise FileNotFoundError(f"model {model_path} not found")
        from looking_glass.model.deeplab import ModelConfig, build_deeplabv3plus

        keras.utils.set_random_seed(0)
        model = build_deeplabv3plus(ModelConfig(**UNTRAINED_CONFIG))
        info = ModelInfo(
            model_id="deeplabv3plus-mobilenetv2-untrained",
            version="0",
            trained=False,
            description="untrained DeepLab V3+ (random weights): areas are not meaningful",
        )
        return cls(model, info, dict(UNTRAINED_CONFIG))

    def accelerated(self, *, xla: bool = False, mixed_precision: bool = False) -> "Segmenter":
        """The same model set up for speed on an accelerator (README "Worker speed").

        ``mixed_precision`` rebuilds the architecture under Keras' ``mixed_float16`` policy (the
        output layer stays float32) and copies the weights over; ``xla`` compiles prediction
        with XLA. Both help on GPUs; on CPUs both are slower (benchmarks/accelerator_benchmark.py).
        """
        import keras

        model = self.model
        if mixed_precision:
            from looking_glass.model.deeplab import ModelConfig, build_deeplabv3plus

            config = ModelConfig(**{k: v for k, v in self.config.items() if k != "imagenet"}, imagenet=False)
            previous = keras.config.dtype_policy()
            keras.config.set_dtype_policy("mixed_float16")
            try:
                model = build_deeplabv3plus(config)
            finally:
                keras.config.set_dtype_policy(previous)
            model.set_weights(self.model.get_weights())
        if xla:
            model.compile(jit_compile=True)
        return Segmenter(model, self.info, self.config)

    def predict_masks(self, images: np.ndarray, threshold: float | None = None) -> np.ndarray:
        """Boolean building masks (n, H, W) for uint8 images (n, H, W, 3)."""
        # predict_on_batch runs the compiled graph: about 1.7x faster than calling the model.
        out = np.asarray(self.model.predict_on_batch(images.astype(np.float32)))[..., 0]
        if self.info.head == "sdt":  # signed distance in metres, positive inside buildings
            return out > 0
        return out >= (self.info.threshold if threshold is None else threshold)


def building_area_m2(mask: np.ndarray, x: int, y: int, z: int) -> float:
    """Ground area of the building pixels of tile x/y/z, with each pixel row's own resolution."""
    per_row = mask.sum(axis=1)
    return float(per_row @ pixel_row_areas_m2(x, y, z, size=mask.shape[0]))
