"""Export a Keras DeepLab V3+ to ONNX, checked against the Keras model before it is written.

    python -m looking_glass.model.onnx_export MODEL.keras [--tiles N] [--force]

Every model the project writes gets ``<name>.onnx`` beside ``<name>.keras`` and its sidecar
``<name>.json`` (:func:`onnx_path`, the naming rule of :mod:`looking_glass.model.sidecar`). The
Keras model is converted with tf2onnx (opset :data:`OPSET`, one float32 input ``image`` of
shape (batch, size, size, 3), batch dynamic; the head moved before the last upsampling by
:mod:`looking_glass.model.onnx_graph`), then the converted model is run with ONNX
Runtime's CPU provider on sample tiles of the synthetic world
(:mod:`looking_glass.datasets.synthetic`) next to the Keras model. Only when the masks agree
(:data:`MIN_MASK_AGREEMENT`) and the raw outputs are close (:data:`MAX_ABS_DIFF`, relative to
the output's range for the ``sdt`` head) is the file written, and the sidecar gains an ``onnx``
record (:func:`export_onnx`): the file's and the Keras file's SHA-256, the opset, the converter
and runtime versions and the check's figures. A check that fails writes nothing and removes an
older ``.onnx`` of the model (it would be stale). The segmenter runs the ONNX file only while
both hashes still match (:mod:`looking_glass.model.inference`).

Imports TensorFlow, tf2onnx and onnxruntime (``pip install 'looking-glass[onnx]'``); the Lambda
never imports this module.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath

import numpy as np

from looking_glass.errors import LookingGlassError
from looking_glass.model.sidecar import sidecar_path
from looking_glass.runtime.atomic import write_atomic

__all__ = [
    "CHECK_TILES",
    "MAX_ABS_DIFF",
    "MIN_MASK_AGREEMENT",
    "ONNX_SUFFIX",
    "OPSET",
    "OnnxExportError",
    "compare_outputs",
    "convert",
    "export_onnx",
    "file_sha256",
    "masks_of",
    "onnx_key",
    "onnx_path",
    "rewrites_of",
    "sample_tiles",
]

ONNX_SUFFIX = ".onnx"
OPSET = 17
INPUT_NAME = "image"
# ONNX metadata key listing the graph rewrites convert() applied (comma-separated).
REWRITES_KEY = "looking_glass.rewrites"
# The check: this many synthetic tiles (zoom 18, the demo area, so they hold buildings).
CHECK_TILES = 8
CHECK_ZOOM = 18
CHECK_ORIGIN = (152950, 132480)
# Refuse the export below this fraction of mask pixels equal to Keras' ...
MIN_MASK_AGREEMENT = 0.9999
# ... or above this max |ONNX - Keras| of the raw output (probability; for the sdt head this
# times max(1, max |Keras output|), as the signed distance is in metres).
MAX_ABS_DIFF = 1e-3


class OnnxExportError(LookingGlassError, RuntimeError):
    """The model cannot be exported to ONNX, or the export does not give the Keras model's masks."""


def onnx_path(model_path: str | Path) -> Path:
    """The ONNX file of the model file ``model_path``: ``models/seg.keras`` -> ``models/seg.onnx``."""
    return Path(model_path).with_suffix(ONNX_SUFFIX)


def onnx_key(model_key: str) -> str:
    """The ONNX file's object key for the model at S3 key ``model_key`` (``v3/seg.keras`` ->
    ``v3/seg.onnx``), by the same rule as :func:`onnx_path`."""
    return str(PurePosixPath(model_key).with_suffix(ONNX_SUFFIX))


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of the file at ``path``."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sample_tiles(n: int = CHECK_TILES, size: int = 256) -> np.ndarray:
    """``n`` uint8 RGB tiles (n, size, size, 3) of the synthetic world's demo area, row by row
    from :data:`CHECK_ORIGIN` (the same tiles every time)."""
    from looking_glass.datasets.synthetic import render_tile

    x0, y0 = CHECK_ORIGIN
    width = 4
    return np.stack([render_tile(CHECK_ZOOM, x0 + i % width, y0 + i // width, size)[0] for i in range(n)])


def masks_of(outputs: np.ndarray, head: str, threshold: float) -> np.ndarray:
    """Boolean masks of raw model outputs (n, H, W[, 1]) as the segmenter draws them: the
    ``sdt`` head's signed distance > 0, else probability >= ``threshold``."""
    out = outputs[..., 0] if outputs.ndim == 4 else outputs
    return out > 0 if head == "sdt" else out >= threshold


def compare_outputs(reference: np.ndarray, candidate: np.ndarray, head: str, threshold: float) -> dict:
    """How close ``candidate`` outputs are to ``reference`` (Keras') ones: max |diff|, the
    fraction of mask pixels that agree and how many differ."""
    if reference.shape != candidate.shape:
        raise OnnxExportError(f"the ONNX model's output shape {candidate.shape} is not Keras' {reference.shape}")
    a = masks_of(reference, head, threshold)
    b = masks_of(candidate, head, threshold)
    differing = int((a != b).sum())
    return {
        "max_abs_diff": float(np.abs(reference.astype(np.float64) - candidate).max()),
        "max_abs_output": float(np.abs(reference).max()),
        "mask_agreement": 1.0 - differing / a.size,
        "pixels_differing": differing,
        "pixels": int(a.size),
    }


def convert(model, input_size: int, rewrite: bool = True) -> bytes:
    """The ONNX model (serialized ModelProto) of Keras model ``model`` for (batch, input_size,
    input_size, 3) float32 inputs named ``image``, by tf2onnx at opset :data:`OPSET`; with
    ``rewrite``, the head applied before the last upsampling
    (:func:`looking_glass.model.onnx_graph.head_before_resize`: the same outputs to float
    rounding, for much less work)."""
    import tensorflow as tf
    import tf2onnx

    from looking_glass.model.onnx_graph import head_before_resize

    spec = (tf.TensorSpec((None, input_size, input_size, 3), tf.float32, name=INPUT_NAME),)
    function = tf.function(lambda image: model(image, training=False))
    try:
        proto, _ = tf2onnx.convert.from_function(function, input_signature=spec, opset=OPSET)
    except Exception as exc:  # noqa: BLE001 - any converter failure is an export failure
        raise OnnxExportError(f"tf2onnx cannot convert the model: {type(exc).__name__}: {exc}") from exc
    if rewrite and head_before_resize(proto):
        proto.metadata_props.add(key=REWRITES_KEY, value="head_before_resize")
    return proto.SerializeToString()


def rewrites_of(onnx_bytes: bytes) -> list[str]:
    """The rewrites of :mod:`looking_glass.model.onnx_graph` that :func:`convert` applied to the
    serialized model ``onnx_bytes`` (its ``looking_glass.rewrites`` metadata), for the sidecar."""
    import onnx

    props = {p.key: p.value for p in onnx.load_from_string(onnx_bytes).metadata_props}
    return [r for r in props.get(REWRITES_KEY, "").split(",") if r]


def _onnx_outputs(onnx_bytes: bytes, images: np.ndarray, batch: int) -> np.ndarray:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    parts = [session.run(None, {name: images[i:i + batch]})[0] for i in range(0, len(images), batch)]
    return np.concatenate(parts)


def _keras_outputs(model, images: np.ndarray, batch: int) -> np.ndarray:
    parts = [np.asarray(model.predict_on_batch(images[i:i + batch])) for i in range(0, len(images), batch)]
    return np.concatenate(parts)


def _versions() -> dict:
    import onnx
    import onnxruntime
    import tf2onnx

    return {"converter": f"tf2onnx {tf2onnx.__version__}", "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__}


def export_onnx(
    model_path: str | Path,
    *,
    model=None,
    tiles: np.ndarray | None = None,
    n_tiles: int = CHECK_TILES,
    min_mask_agreement: float = MIN_MASK_AGREEMENT,
    max_abs_diff: float = MAX_ABS_DIFF,
    batch: int = 8,
) -> dict:
    """Export the model at ``model_path`` (a ``.keras`` file with its sidecar) to
    :func:`onnx_path` beside it, after checking the export; returns the sidecar's new ``onnx``
    record (also written into the sidecar).

    ``model`` is the loaded Keras model when the caller has it (else it is loaded); ``tiles``
    are the uint8 check tiles (default :func:`sample_tiles` of ``n_tiles`` at the model's input
    size). Raises :class:`OnnxExportError` when the conversion fails or its masks disagree
    beyond the tolerances (the file is then not written, and an older one removed), and
    ``FileNotFoundError`` without the model or its sidecar.
    """
    model_path = Path(model_path)
    if not model_path.exists():
        raise FileNotFoundError(f"model {model_path} not found")
    sidecar = sidecar_path(model_path)
    if not sidecar.exists():
        raise FileNotFoundError(f"model metadata {sidecar} not found (expected next to the model)")
    meta = json.loads(sidecar.read_text())
    config = meta.get("config", {})
    head = config.get("head", "binary")
    threshold = float(meta.get("threshold", 0.5))
    size = int(config.get("input_size", 256))
    if model is None:
        import keras

        model = keras.saving.load_model(model_path, compile=False)
    given = tiles is not None
    if not given:
        tiles = sample_tiles(n_tiles, size)
    target = onnx_path(model_path)
    started = time.perf_counter()
    onnx_bytes = convert(model, size)
    seconds = time.perf_counter() - started
    images = np.ascontiguousarray(tiles, dtype=np.float32)
    reference = _keras_outputs(model, images, batch)
    candidate = _onnx_outputs(onnx_bytes, images, batch)
    check = compare_outputs(reference, candidate, head, threshold)
    limit = max_abs_diff * (max(1.0, check["max_abs_output"]) if head == "sdt" else 1.0)
    check.update({
        "tiles": int(len(images)),
        "source": "given tiles" if given
        else f"synthetic world, zoom {CHECK_ZOOM}, from x={CHECK_ORIGIN[0]} y={CHECK_ORIGIN[1]}",
        "provider": "CPUExecutionProvider",
        "min_mask_agreement": min_mask_agreement,
        "max_abs_diff_allowed": limit,
    })
    check["passed"] = bool(check["mask_agreement"] >= min_mask_agreement and check["max_abs_diff"] <= limit)
    if not check["passed"]:
        if target.exists():
            target.unlink()
        if "onnx" in meta:
            del meta["onnx"]
            write_atomic(sidecar, (json.dumps(meta, indent=2) + "\n").encode())
        raise OnnxExportError(
            f"the ONNX export of {model_path} does not give the Keras model's masks: mask agreement "
            f"{check['mask_agreement']:.6f} (need >= {min_mask_agreement}), max |diff| "
            f"{check['max_abs_diff']:.3g} (allowed {limit:.3g}) on {check['tiles']} tiles; not written"
        )
    write_atomic(target, onnx_bytes)
    record = {
        "file": target.name,
        "sha256": hashlib.sha256(onnx_bytes).hexdigest(),
        "keras_sha256": file_sha256(model_path),
        "opset": OPSET,
        "rewrites": rewrites_of(onnx_bytes),
        **_versions(),
        "input": {"name": INPUT_NAME, "shape": [None, size, size, 3], "dtype": "float32"},
        "head": head,
        "input_size": size,
        "check": check,
        "convert_seconds": round(seconds, 1),
        "exported": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    meta["onnx"] = record
    write_atomic(sidecar, (json.dumps(meta, indent=2) + "\n").encode())
    return record


def main(argv: list[str] | None = None) -> int:
    """The command: export each model given; exit 0, or 1 when one could not be exported."""
    parser = argparse.ArgumentParser(
        prog="python -m looking_glass.model.onnx_export",
        description="Export Keras models (.keras with their .json sidecar) to checked ONNX files beside them.",
    )
    parser.add_argument("models", nargs="+", help="the .keras files")
    parser.add_argument("--tiles", type=int, default=CHECK_TILES, help="synthetic tiles of the check (default %(default)s)")
    parser.add_argument("--min-mask-agreement", type=float, default=MIN_MASK_AGREEMENT)
    parser.add_argument("--max-abs-diff", type=float, default=MAX_ABS_DIFF)
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    status = 0
    for path in args.models:
        try:
            record = export_onnx(path, n_tiles=args.tiles, min_mask_agreement=args.min_mask_agreement,
                                 max_abs_diff=args.max_abs_diff)
        except (OnnxExportError, OSError, ValueError) as exc:
            print(f"error: {path}: {exc}", file=sys.stderr, flush=True)
            status = 1
            continue
        check = record["check"]
        print(f"{onnx_path(path)}: opset {record['opset']}, {record['converter']}; check on {check['tiles']} tiles: "
              f"max |diff| {check['max_abs_diff']:.3g}, mask agreement {check['mask_agreement']:.6f} "
              f"({check['pixels_differing']} of {check['pixels']} pixels differ)", flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
