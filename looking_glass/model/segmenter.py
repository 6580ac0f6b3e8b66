"""Loading a segmentation model and turning tile images into building masks and areas.

A model is a Keras file plus a JSON sidecar (``<name>.json``, :mod:`looking_glass.model.sidecar`)
with its id, version, config and whether it was trained. With no model path, the model shipped in
the package is used if there is one; otherwise an untrained DeepLab V3+ with random weights, and
the metadata says so.

The model runs with ONNX Runtime when its checked ONNX export (``<name>.onnx``,
:mod:`looking_glass.model.onnx_export`) is usable, else with Keras: ``LG_RUNTIME`` or the
``runtime`` argument (auto|onnx|keras) chooses, see :mod:`looking_glass.model.inference`. When
ONNX Runtime runs, the Keras model (and TensorFlow) is loaded only if something asks for
:attr:`Segmenter.model`.
"""

from __future__ import annotations

import importlib.resources
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from looking_glass.grid import pixel_row_areas_m2
from looking_glass.model.sidecar import sidecar_path

log = logging.getLogger(__name__)

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
    """Runs the model on batches of uint8 RGB tiles.

    ``runner`` is what runs it (:class:`looking_glass.model.inference.OnnxRunner` or
    ``KerasRunner``; default: Keras on ``model``); ``runtime`` and ``provider`` say which.
    """

    def __init__(self, model, info: ModelInfo, config: dict | None = None, runner=None, model_path=None):
        self._model = model
        self.info = info
        self.config = config or {}  # the ModelConfig fields, from the sidecar
        self._runner = runner
        self.model_path = Path(model_path) if model_path else None
        self.fallback_reason = ""  # why auto did not pick ONNX Runtime ("" when it did, or not asked)

    @property
    def model(self):
        """The Keras model (loaded on first use when ONNX Runtime runs the segmenter)."""
        if self._model is None:
            import keras

            self._model = keras.saving.load_model(self.model_path, compile=False)
        return self._model

    @property
    def runner(self):
        """What runs the model (an ONNX Runtime session, or Keras, created on first use)."""
        if self._runner is None:
            from looking_glass.model.inference import KerasRunner

            self._runner = KerasRunner(self.model)
        return self._runner

    @property
    def runtime(self) -> str:
        """``onnx`` or ``keras``."""
        return self.runner.runtime

    @property
    def provider(self) -> str:
        """The ONNX Runtime execution provider that runs, or TensorFlow's device (CPU/GPU)."""
        return self.runner.provider

    def describe(self) -> str:
        """One line: the runtime, its version and provider (for logs)."""
        return self.runner.describe()

    @classmethod
    def load(cls, model_path: str = "", runtime: str | None = None, threads: int | None = None,
             providers=None, tiles_per_run: int | None = None) -> "Segmenter":
        """The model at ``model_path`` with its sidecar; "" means the shipped model, or an
        untrained DeepLab V3+ (``UNTRAINED_CONFIG``) when none is shipped.

        ``runtime`` (auto|onnx|keras), ``threads`` (ONNX Runtime intra-op threads),
        ``providers`` (allowed execution providers) and ``tiles_per_run`` (tiles per ONNX Runtime
        run, 0: the provider's default) default to ``LG_RUNTIME``, ``LG_INFERENCE_THREADS``,
        ``LG_ONNX_PROVIDERS`` and ``LG_ONNX_TILES_PER_RUN``
        (:class:`looking_glass.runtime.settings.ModelRuntimeSettings`). ``auto`` falls back to
        Keras when the ONNX export is missing or unusable (the reason is logged and kept in
        :attr:`fallback_reason`); ``onnx`` raises
        :class:`looking_glass.model.inference.RuntimeUnavailable` instead.
        """
        from looking_glass.model.inference import RUNTIMES, OnnxRunner, RuntimeUnavailable, onnx_problem
        from looking_glass.model.onnx_export import onnx_path

        if runtime is None or threads is None or providers is None or tiles_per_run is None:
            from looking_glass.runtime.settings import ModelRuntimeSettings

            env = ModelRuntimeSettings.from_env()
            runtime = env.runtime if runtime is None else runtime
            threads = env.threads if threads is None else threads
            providers = env.providers if providers is None else providers
            tiles_per_run = env.tiles_per_run if tiles_per_run is None else tiles_per_run
        if runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {list(RUNTIMES)}, got {runtime!r}")
        path = Path(model_path) if model_path else SHIPPED_MODEL
        if path.exists():
            meta = load_metadata(path)
            info = ModelInfo(
                model_id=meta["model_id"],
                version=str(meta["version"]),
                trained=bool(meta.get("trained", True)),
                description=meta.get("description", ""),
                head=meta.get("config", {}).get("head", "binary"),
                threshold=float(meta.get("threshold", 0.5)),
            )
            reason = ""
            if runtime != "keras":
                reason = onnx_problem(path, meta) or ""
                if not reason:
                    try:
                        runner = OnnxRunner(onnx_path(path), threads=threads or None, allowed=providers,
                                            tiles_per_run=tiles_per_run or None)
                    except RuntimeUnavailable as exc:
                        reason = str(exc)
                    else:
                        return cls(None, info, meta.get("config", {}), runner=runner, model_path=path)
                if runtime == "onnx":
                    raise RuntimeUnavailable(f"cannot run {path} with ONNX Runtime: {reason}")
                log.warning("running %s with Keras, not ONNX Runtime: %s", path.name, reason)
            import keras

            model = keras.saving.load_model(path, compile=False)
            segmenter = cls(model, info, meta.get("config", {}), model_path=path)
            segmenter.fallback_reason = reason
            return segmenter
        if model_path:
            raise FileNotFoundError(f"model {model_path} not found")
        if runtime == "onnx":
            raise RuntimeUnavailable("no model is shipped: the untrained fallback model runs with Keras only")
        import keras

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
        return Segmenter(model, self.info, self.config, model_path=self.model_path)

    def predict_masks(self, images: np.ndarray, threshold: float | None = None) -> np.ndarray:
        """Boolean building masks (n, H, W) for uint8 images (n, H, W, 3)."""
        return self.masks_of(self.predict_raw(images)[..., 0], threshold)

    def masks_of(self, raw: np.ndarray, threshold: float | None = None) -> np.ndarray:
        """Boolean building masks of raw outputs (``predict_raw(...)[..., 0]``, any shape): the
        head's rule (sdt: positive distance; binary: probability >= the threshold)."""
        if self.info.head == "sdt":  # signed distance in metres, positive inside buildings
            return raw > 0
        return raw >= (self.info.threshold if threshold is None else threshold)

    def predict_raw(self, images: np.ndarray) -> np.ndarray:
        """The model's raw outputs (n, H, W, 1) (probability, or signed distance for ``sdt``)
        for uint8 images (n, H, W, 3), by whichever runtime runs."""
        return np.asarray(self.runner(np.ascontiguousarray(images, dtype=np.float32)))


def building_area_m2(mask: np.ndarray, x: int, y: int, z: int) -> float:
    """Ground area of the building pixels of tile x/y/z, with each pixel row's own resolution."""
    per_row = mask.sum(axis=1)
    return float(per_row @ pixel_row_areas_m2(x, y, z, size=mask.shape[0]))
