"""The model sidecar naming rule: a model ``<name>.keras`` has its metadata in ``<name>.json``
beside it (model id, version, ``ModelConfig`` fields, whether it was trained, threshold).

Everything that saves, ships, fetches or loads a model finds the sidecar with these functions:
the segmenter, the training job's output, the worker's model fetch, the demo and the CLI.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

__all__ = ["SIDECAR_SUFFIX", "sidecar_key", "sidecar_path"]

SIDECAR_SUFFIX = ".json"


def sidecar_path(model_path: str | Path) -> Path:
    """The sidecar of the model file ``model_path``: the same path with its suffix replaced by
    ``.json`` (``models/seg.keras`` -> ``models/seg.json``; a path without a suffix gets one)."""
    return Path(model_path).with_suffix(SIDECAR_SUFFIX)


def sidecar_key(model_key: str) -> str:
    """The sidecar's object key for the model at S3 key ``model_key`` (``v3/seg.keras`` ->
    ``v3/seg.json``), by the same rule as :func:`sidecar_path`."""
    return str(PurePosixPath(model_key).with_suffix(SIDECAR_SUFFIX))
