"""Whether ``evaluate --data DIR`` scores a model on the data it was trained on: then the score
is no test score, and ``evaluate`` says so in one ``warning:`` line.

The model's sidecar records its training data (``training.data.train`` and
``training.data.validation``: each channel's ``kind``, ``path``, ``resolved_path`` when the
channel was a link, as ``train --local``'s are, and the dataset manifest's ``created``,
``counts``, ``mode``, ``chip_size``, ``class_balance``; :meth:`looking_glass.training.data.Source.summary`).
A recorded channel is ``DIR`` when either

- its folder is ``DIR`` (both resolved: links followed; for a channel of bare shards, the folder
  ``DIR/validation`` that ``evaluate`` reads), or
- its manifest is ``DIR``'s: the same ``created`` (to the second) and the same value of each of
  ``counts``, ``mode``, ``chip_size``, ``class_balance`` it records, e.g. a copy of the dataset,
  or the one a SageMaker job read from ``/opt/ml/input/data/train``. Two datasets written in the
  same second with the same counts and building pixel fraction are taken for one.
"""

from __future__ import annotations

from pathlib import Path

from looking_glass.datasets.chips import read_manifest
from looking_glass.datasets.errors import DatasetError
from looking_glass.model.registry import run_label

# The manifest members that must agree (when the sidecar records them) besides ``created``.
MANIFEST_KEYS = ("counts", "mode", "chip_size", "class_balance")


def _resolved(text) -> Path | None:
    """``text`` as an absolute path with links followed; None when it is no path."""
    if not isinstance(text, str) or not text:
        return None
    try:
        return Path(text).resolve()
    except (OSError, RuntimeError):  # a link loop
        return None


def same_data(recorded, data_dir: Path, manifest: dict) -> str | None:
    """How the channel ``recorded`` (a sidecar's ``training.data.train`` or ``.validation``) is
    the prepared dataset ``data_dir`` whose ``manifest.json`` is ``manifest``: ``"folder"``,
    ``"manifest"`` (see the module docstring), or None when it is not (or records too little)."""
    if not isinstance(recorded, dict):
        return None
    folder = _resolved(recorded.get("resolved_path") or recorded.get("path"))
    here = data_dir.resolve()
    if folder is not None and folder == (here / "validation" if recorded.get("kind") == "shards" else here):
        return "folder"
    theirs = recorded.get("manifest")
    if isinstance(theirs, dict) and theirs.get("created") and theirs.get("created") == manifest.get("created") \
            and all(theirs[k] == manifest.get(k) for k in MANIFEST_KEYS if k in theirs):
        return "manifest"
    return None


def own_data_warning(sidecar, data_dir) -> str | None:
    """The ``warning:`` line for ``evaluate --data data_dir`` (whose validation chips are scored)
    of the model whose sidecar is ``sidecar``, or None when the dataset is not its training data
    (or it records none, or ``data_dir`` has no readable manifest: ``datasets.chips.read_manifest``): when it is the
    dataset its validation channel read, the score is the validation score its training measured
    on these very chips; when only its train channel, these chips were held out of training but
    come from the same dataset."""
    training = sidecar.get("training") if isinstance(sidecar, dict) else None
    channels = training.get("data") if isinstance(training, dict) else None
    if not isinstance(channels, dict):
        return None
    data_dir = Path(data_dir).expanduser()
    try:  # the one reader of a dataset's manifest (evaluate read it already: this only feeds a warning)
        manifest = read_manifest(data_dir)
    except (DatasetError, OSError):
        return None
    val, train = (same_data(channels.get(c), data_dir, manifest) for c in ("validation", "train"))
    how = val or train
    if how is None:
        return None
    model = run_label(sidecar.get("model_id"), sidecar.get("version")) or "this model"
    what = ("the dataset" if how == "folder"
            else f"a copy of the dataset (the same manifest, created {manifest.get('created')})")
    if val:
        used = "trained and validated on" if train else "validated on"
        return (f"warning: --data {data_dir} is {what} model {model} was {used}: these validation "
                "chips are the ones its training scored, so this is its validation score, not a test score on unseen data")
    return (f"warning: --data {data_dir} is {what} model {model} was trained on: its validation chips were held out "
            "of training but come from the same dataset, so this is not a test score on unseen data")
