"""Fine-tuning: the model a training job starts from (the ``init`` channel).

The job fine-tunes when its ``init`` channel (``input/data/init``, SageMaker's
``SM_CHANNEL_INIT``) holds a model: one ``.keras`` file with its sidecar (``<name>.json``, see
:mod:`looking_glass.model.sidecar`), or one SageMaker ``model.tar.gz`` holding them (a training
job's output). The sidecar's ``config`` is the model's architecture: it replaces the model
hyperparameters, and the weights are the model's own.

Outside the job, :func:`stage_init` copies the model named by ``train --init`` (``shipped``, a
path to a ``.keras`` file, a folder holding one such as ``RUN/model``, a ``.tar.gz``, or an
``s3://`` URI) into a folder that becomes the channel, checking what it can without Keras first
(a missing file or sidecar, a file that is not a Keras archive), so a bad ``--init`` fails before
anything is trained or uploaded.

Imports no TensorFlow at module level.
"""

from __future__ import annotations

import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from looking_glass.training.errors import TrainingError

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz")


class InitModelError(TrainingError, ValueError):
    """The starting model is missing, unreadable or not a model this job can fine-tune."""


@dataclass(frozen=True)
class InitModel:
    """A starting model: its ``.keras`` file and its sidecar."""

    path: Path
    sidecar: dict

    @property
    def config(self) -> dict:
        """The model's build config (the sidecar's ``config``)."""
        return self.sidecar["config"]

    def threshold_note(self, hp: dict, given: bool) -> str | None:
        """The training log's line when the fine-tuned model's building threshold (the
        ``threshold`` hyperparameter in ``hp``, ``given`` or the default) differs from this
        model's (its sidecar's ``threshold``, 0.5 when absent): both values and how to keep the
        parent's. None when they are equal or the head is not the binary one (no threshold)."""
        if hp.get("head", "binary") != "binary":
            return None
        try:
            parent = float(self.sidecar.get("threshold", 0.5))
        except (TypeError, ValueError):
            return None  # a sidecar the model check already refuses; nothing to compare
        if parent == hp["threshold"]:
            return None
        how = "as given" if given else "its default"
        return (f"threshold: the init model {self.sidecar.get('model_id')} version {self.sidecar.get('version')} "
                f"calls a pixel a building at probability >= {parent:g}; this model will use {hp['threshold']:g} "
                f"(the threshold hyperparameter, {how}) in its metrics and sidecar; to keep the parent's, give "
                f"--hyperparameters '{{\"threshold\": {parent:g}}}'")

    def parent(self, source: str | None = None) -> dict:
        """What the fine-tuned model's sidecar records of it."""
        out = {k: self.sidecar.get(k) for k in ("model_id", "version")}
        out["source"] = source or str(self.path)
        val = self.sidecar.get("validation")
        if isinstance(val, dict) and "val_iou" in val:
            out["val_iou"] = val["val_iou"]
        return out


def _model_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.keras") if p.is_file())


def read_init(folder: Path, extract_to: Path | None = None) -> InitModel | None:
    """The starting model in ``folder`` (the init channel); ``None`` if the folder is missing or
    empty. A ``.tar.gz``/``.tgz`` in it is extracted (into ``extract_to``, default a new
    temporary folder) first.

    Raises :class:`InitModelError` if there is not exactly one ``.keras`` file, if its sidecar is
    missing or not a model sidecar, or if the file is not a Keras archive.
    """
    folder = Path(folder)
    if not folder.exists() or (folder.is_dir() and not any(folder.iterdir())):
        return None
    if not folder.is_dir():
        raise InitModelError(f"the init channel {folder} is not a directory")
    archives = sorted(p for p in folder.iterdir() if p.name.endswith(ARCHIVE_SUFFIXES))
    search = folder
    if archives and not _model_files(folder):
        if len(archives) > 1:
            raise InitModelError(f"the init channel {folder} holds {len(archives)} archives, expected one model")
        search = Path(extract_to or tempfile.mkdtemp(prefix="lg-init-"))
        search.mkdir(parents=True, exist_ok=True)
        try:
            with tarfile.open(archives[0]) as tar:
                tar.extractall(search, filter="data")
        except (tarfile.TarError, OSError) as e:
            raise InitModelError(f"the init model archive {archives[0]} cannot be read: {e}") from None
    models = _model_files(search)
    if len(models) != 1:
        listing = sorted(p.name for p in search.iterdir())[:10]
        raise InitModelError(
            f"the init channel {folder} holds {len(models)} .keras model files, expected exactly one "
            f"(with its .json sidecar); it holds {listing}"
        )
    return load_sidecar(models[0])


def load_sidecar(model: Path) -> InitModel:
    """The :class:`InitModel` of ``model`` (a ``.keras`` file) from its sidecar, checked as every
    command checks a model path (:func:`looking_glass.model.model_file.check_model_file`: a Keras
    archive, a sidecar with ``model_id`` and ``version``) plus the config fine-tuning needs
    (``head``, ``input_size``). Raises :class:`InitModelError`."""
    from looking_glass.model.model_file import ModelFileError, check_model_file
    from looking_glass.model.sidecar import sidecar_path

    model = Path(model)
    if not model.is_file():
        raise InitModelError(f"the init model {model} does not exist")
    try:
        meta = check_model_file(model, what="the init model").sidecar
    except ModelFileError as e:
        raise InitModelError(str(e)) from None
    side = sidecar_path(model)
    if not isinstance(meta.get("config"), dict):
        raise InitModelError(f"the init model's sidecar {side} has no model config")
    for key in ("head", "input_size"):
        if key not in meta["config"]:
            raise InitModelError(f"the init model's sidecar {side} has no config.{key}")
    return InitModel(model, meta)


def load_init_model(init: InitModel, config):
    """The Keras model of ``init``, checked against ``config`` (the job's ``ModelConfig``, built
    from the sidecar) by :func:`looking_glass.model.model_file.check_loadable`: its input must be
    ``input_size`` px RGB and its output the head's.

    Raises :class:`InitModelError` if it cannot be loaded (corrupt) or does not match.
    """
    from looking_glass.model.model_file import ModelFileError, check_loadable

    try:
        return check_loadable(init.path, {"input_size": config.input_size, "head": config.head},
                              f"the init model {init.path}")
    except ModelFileError as e:
        raise InitModelError(str(e)) from None


def shipped_model_path() -> Path:
    """The ``.keras`` file of the model the package ships."""
    from looking_glass.model.segmenter import SHIPPED_MODEL

    return SHIPPED_MODEL


def stage_init(spec: str, dest, s3=None) -> tuple[InitModel, str]:
    """Copy the model ``spec`` names into the folder ``dest`` (created, emptied); returns the
    staged :class:`InitModel` and the source as recorded (the shipped model's path, a resolved
    path, or the URI).

    ``spec``: ``shipped``; ``s3://bucket/key`` (a ``.keras`` with its sidecar, or a
    ``model.tar.gz``; ``s3`` is a boto3 client, default a new one); a local ``.keras`` file (its
    sidecar beside it), a ``.tar.gz``, or a folder holding exactly one model (e.g. ``RUN/model``).
    Raises :class:`InitModelError`.
    """
    if not spec or not str(spec).strip():
        raise InitModelError("--init needs a model: shipped, a path or an s3:// URI")
    spec = str(spec).strip()
    dest = Path(dest)
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    if spec.startswith("s3://"):
        from looking_glass.model.fetch import fetch_model

        try:
            fetch_model(spec, dest, s3=s3)
        except Exception as e:  # noqa: BLE001 -- botocore's errors, a bad URI, an archive without one model
            raise InitModelError(f"cannot fetch the init model {spec}: {e}") from None
        for archive in dest.glob("*.tar.gz"):
            archive.unlink()
        init = read_init(dest)
        return init, spec
    path = shipped_model_path() if spec == "shipped" else Path(spec).expanduser().resolve()
    if not path.exists():
        raise InitModelError(f"the init model {spec} does not exist")
    if path.is_file() and path.suffix == ".json":  # its sidecar given instead: the model beside it
        from looking_glass.model.model_file import ModelFileError, resolve_model_path

        try:
            path = resolve_model_path(path, what="--init")
        except ModelFileError as e:
            raise InitModelError(str(e)) from None
    if path.is_dir():
        init = read_init(path, extract_to=dest / "extracted")
        if init is None:
            raise InitModelError(f"the init model folder {path} is empty")
        path = init.path
    elif path.name.endswith(ARCHIVE_SUFFIXES):
        shutil.copy2(path, dest / "model.tar.gz")
        init = read_init(dest, extract_to=dest / "extracted")
        (dest / "model.tar.gz").unlink()
        path = init.path
    init = load_sidecar(path)
    from looking_glass.model.sidecar import sidecar_path

    target = dest / path.name
    if path.parent != dest:
        shutil.copy2(path, target)
        shutil.copy2(sidecar_path(path), sidecar_path(target))
    for extracted in dest.glob("extracted"):
        if target.parent != extracted:
            shutil.rmtree(extracted)
    return load_sidecar(target), str(path if spec != "shipped" else f"shipped ({path.name})")
