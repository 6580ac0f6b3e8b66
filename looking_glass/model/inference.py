"""The runtime that runs a model: ONNX Runtime when the checked ONNX export is usable, else Keras.

``LG_RUNTIME`` (:func:`looking_glass.runtime.settings.model_runtime_from_env`) chooses:

- ``auto`` (default): the model's ONNX file (:func:`looking_glass.model.onnx_export.onnx_path`)
  with ONNX Runtime when :func:`onnx_problem` finds nothing wrong with it and a session opens,
  else the Keras model, with the reason logged;
- ``onnx``: ONNX Runtime or an error saying why not;
- ``keras``: the Keras model (TensorFlow), as before the ONNX export existed.

An ONNX file is used only if its sidecar's ``onnx`` record says its check passed, the file's
SHA-256 is the recorded one (not corrupt, not another model's) and so is the ``.keras`` file's
(not a stale export of a model since replaced), and its input is the model's input size.

Execution providers (:func:`choose_providers`): TensorRT, then CUDA, then CPU, among those the
installed ONNX Runtime has (``onnxruntime-gpu`` has all three, ``onnxruntime`` CPU only);
``LG_ONNX_PROVIDERS`` can narrow the list. Threads: ONNX Runtime's intra-op pool gets
``LG_INFERENCE_THREADS`` threads, by default one fewer than the CPUs this process may use
(:func:`default_threads`), leaving a core to the worker's download and store threads, and its
idle threads sleep rather than spin.

Tiles per run: with the CPU provider a batch runs :data:`CPU_TILES_PER_RUN` tiles at a time
(``LG_ONNX_TILES_PER_RUN`` overrides; GPU providers take the whole batch): each layer's
activations for a few 256 px tiles stay in the CPU's caches, where a whole batch's (hundreds of
MB for 32 tiles) go out to memory and back at every layer. The outputs are the same (each tile
is computed on its own either way); docs/inference.md has the measurements.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np

from looking_glass.errors import LookingGlassError
from looking_glass.model.onnx_export import file_sha256, onnx_path
from looking_glass.model.sidecar import sidecar_path

__all__ = [
    "CPU_TILES_PER_RUN",
    "PROVIDER_ORDER",
    "RUNTIMES",
    "KerasRunner",
    "OnnxRunner",
    "RuntimeUnavailable",
    "choose_providers",
    "default_threads",
    "onnx_problem",
]

log = logging.getLogger(__name__)

RUNTIMES = ("auto", "onnx", "keras")
# Best first; CPU is always the last resort.
PROVIDER_ORDER = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
# Tiles per session run with the CPU provider (see the module docstring).
CPU_TILES_PER_RUN = 2
PROVIDER_NAMES = {"tensorrt": "TensorrtExecutionProvider", "cuda": "CUDAExecutionProvider",
                  "cpu": "CPUExecutionProvider"}


class RuntimeUnavailable(LookingGlassError, RuntimeError):
    """The runtime asked for (``LG_RUNTIME=onnx``) cannot run this model; the message says why."""


def default_threads(cpus: int | None = None) -> int:
    """Intra-op threads for inference: the usable CPUs less one (for downloads and storing), at
    least 1. ``cpus`` defaults to the CPUs this process may run on."""
    if cpus is None:
        try:
            cpus = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            cpus = os.cpu_count() or 1
    return max(1, cpus - 1)


def choose_providers(available, allowed=None) -> list[str]:
    """The execution providers to ask ONNX Runtime for, best first: those of
    :data:`PROVIDER_ORDER` that ``available`` (``onnxruntime.get_available_providers()``) has
    and ``allowed`` (short names ``tensorrt``/``cuda``/``cpu`` or full provider names; None: all)
    permits. The CPU provider is always last, allowed or not, since every build has it."""
    wanted = None if allowed is None else {PROVIDER_NAMES.get(str(a).lower(), a) for a in allowed}
    chosen = [p for p in PROVIDER_ORDER if p in available and (wanted is None or p in wanted)]
    if "CPUExecutionProvider" not in chosen:
        chosen.append("CPUExecutionProvider")
    return chosen


def onnx_problem(model_path: str | Path, meta: dict | None = None) -> str | None:
    """Why the ONNX export of the model at ``model_path`` must not be used, or None when it may:
    no ``.onnx`` file, no passed check in the sidecar, a file that is not the checked one, a
    ``.keras`` model changed since the export, an input size that is not the model's."""
    model_path = Path(model_path)
    path = onnx_path(model_path)
    if not path.exists():
        return f"no ONNX export ({path.name} not found; python -m looking_glass.model.onnx_export {model_path})"
    if meta is None:
        try:
            meta = json.loads(sidecar_path(model_path).read_text())
        except (OSError, ValueError) as exc:
            return f"cannot read the sidecar: {exc}"
    record = meta.get("onnx")
    if not isinstance(record, dict):
        return f"the sidecar has no record of a checked ONNX export ({path.name} is unchecked or stale)"
    if not record.get("check", {}).get("passed"):
        return "the ONNX export did not pass its check"
    size = meta.get("config", {}).get("input_size", 256)
    shape = record.get("input", {}).get("shape") or [None, record.get("input_size"), record.get("input_size"), 3]
    if list(shape[1:]) != [size, size, 3]:
        return f"the ONNX export takes {shape[1:]} inputs, the model {size}x{size}x3"
    if record.get("head", meta.get("config", {}).get("head", "binary")) != meta.get("config", {}).get("head", "binary"):
        return f"the ONNX export has the {record.get('head')} head, the model another"
    if file_sha256(path) != record.get("sha256"):
        return f"{path.name} is not the file that was checked (SHA-256 differs: corrupt or another model's)"
    if model_path.exists() and file_sha256(model_path) != record.get("keras_sha256"):
        return f"{model_path.name} changed since the ONNX export (re-export it)"
    return None


class KerasRunner:
    """Runs the Keras model (TensorFlow): raw outputs (n, H, W, 1) of float32 images."""

    runtime = "keras"

    def __init__(self, model):
        self.model = model
        self.provider = _tensorflow_device()

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """Raw outputs of float32 images (n, H, W, 3)."""
        # predict_on_batch runs the compiled graph: about 1.7x faster than calling the model.
        return np.asarray(self.model.predict_on_batch(images))

    def describe(self) -> str:
        """One line for logs: Keras and TensorFlow versions, the device."""
        return f"Keras {_version('keras')} / TensorFlow {_version('tensorflow')} on {self.provider}"


class OnnxRunner:
    """Runs an ONNX model with ONNX Runtime: raw outputs (n, H, W, 1) of float32 images.

    ``providers`` default to :func:`choose_providers` of what is installed; ``threads`` is the
    intra-op pool size (default :func:`default_threads`). ``provider`` is the one that runs.
    ``tiles_per_run`` is how many tiles each session run takes (default: :data:`CPU_TILES_PER_RUN`
    with the CPU provider, the whole batch with a GPU's). Raises :class:`RuntimeUnavailable` when
    onnxruntime is missing or the file does not load, ``ValueError`` for a ``tiles_per_run`` < 1.
    """

    runtime = "onnx"

    def __init__(self, path: str | Path, providers=None, threads: int | None = None, allowed=None,
                 tiles_per_run: int | None = None):
        if tiles_per_run is not None and int(tiles_per_run) < 1:
            raise ValueError(f"tiles_per_run must be at least 1, got {tiles_per_run}")
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise RuntimeUnavailable(
                "onnxruntime is not installed (pip install 'looking-glass[onnx]', or onnxruntime-gpu)"
            ) from exc
        self.path = Path(path)
        self.threads = default_threads() if not threads else int(threads)
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        # Idle pool threads sleep instead of spinning: the CPU goes to the worker's download and
        # store threads (and, on a shared machine, measured faster: 68 vs 58 tiles/s).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        wanted = providers if providers is not None else choose_providers(ort.get_available_providers(), allowed)
        if any(p != "CPUExecutionProvider" for p in wanted) and hasattr(ort, "preload_dlls"):
            try:  # CUDA/cuDNN from the nvidia-* wheels (TensorFlow's and-cuda), not the system's
                ort.preload_dlls()
            except Exception:  # noqa: BLE001 - then the system's libraries, or the next provider
                pass
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=_with_options(wanted, self.path))
        except Exception as exc:  # noqa: BLE001 - a file ONNX Runtime cannot load is unusable
            raise RuntimeUnavailable(f"ONNX Runtime cannot load {self.path.name}: {type(exc).__name__}: {exc}") from exc
        self.providers = self.session.get_providers()
        self.provider = self.providers[0]
        self.input_name = self.session.get_inputs()[0].name
        self.version = ort.__version__
        if tiles_per_run is None:  # 0 below: the whole batch in one run
            tiles_per_run = CPU_TILES_PER_RUN if self.provider == "CPUExecutionProvider" else 0
        self.tiles_per_run = int(tiles_per_run)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """Raw outputs of float32 images (n, H, W, 3), :attr:`tiles_per_run` tiles per run."""
        step = self.tiles_per_run
        if not step or len(images) <= step:
            return self.session.run(None, {self.input_name: images})[0]
        first = self.session.run(None, {self.input_name: images[:step]})[0]
        out = np.empty((len(images), *first.shape[1:]), first.dtype)
        out[:step] = first
        for start in range(step, len(images), step):
            out[start:start + step] = self.session.run(None, {self.input_name: images[start:start + step]})[0]
        return out

    def describe(self) -> str:
        """One line for logs: ONNX Runtime's version, the provider that runs, the threads, tiles
        per run, the file."""
        cpu = self.provider == "CPUExecutionProvider"
        threads = f", {self.threads} intra-op threads" if cpu else ""
        per_run = f", {self.tiles_per_run} tiles per run" if self.tiles_per_run else ""
        return f"ONNX Runtime {self.version} with {self.provider}{threads}{per_run} ({self.path.name})"


def _with_options(providers, path: Path) -> list:
    """``providers`` with their options: TensorRT caches its engines (built once per model and
    input shape, which takes minutes) in the temporary folder, and stays in fp32 (the masks were
    checked in fp32)."""
    import tempfile

    out = []
    for p in providers:
        if p == "TensorrtExecutionProvider":
            cache = Path(tempfile.gettempdir()) / "looking-glass-trt-cache" / path.stem
            try:
                cache.mkdir(parents=True, exist_ok=True)
            except OSError:
                pass
            out.append((p, {"trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache)}))
        else:
            out.append(p)
    return out


def _version(module: str) -> str:
    try:
        return __import__(module).__version__
    except Exception:  # noqa: BLE001
        return "?"


def _tensorflow_device() -> str:
    try:
        import tensorflow as tf

        return "GPU" if tf.config.list_logical_devices("GPU") else "CPU"
    except Exception:  # noqa: BLE001
        return "CPU"
