"""A model path the user gave, resolved and checked the same way by every command that takes one.

``demo``/``up``/``evaluate``/``plot --model``, ``models register`` and ``train --init`` accept:

* a ``.keras`` file with its sidecar beside it (:mod:`looking_glass.model.sidecar`);
* the sidecar ``<name>.json`` given instead of the model: its ``<name>.keras``;
* a folder holding exactly one ``.keras`` file (at any depth), e.g. a training run's ``RUN/model``.

:func:`check_model_file` then checks, without TensorFlow, that the file is a Keras archive (a zip
with Keras's ``config.json``, every member's CRC intact) and that its sidecar is a JSON object
with ``model_id`` and ``version``, and that the archive's own ``config.json`` (a functional
model's input layer and output layer) agrees with the sidecar's ``config``
(:func:`check_archive_config`: input ``input_size`` px RGB, output the ``head``'s layer of one
channel); with ``load=True`` it also loads the model with Keras and checks the same on the loaded
model, output size included (:func:`check_loadable`). Every failure is one
:class:`ModelFileError` line naming the path as the user gave it (exit status 2).

Imports no TensorFlow at module level.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

from looking_glass.errors import EXIT_BAD_INPUT, LookingGlassError
from looking_glass.model.sidecar import SIDECAR_SUFFIX, sidecar_path

MODEL_SUFFIX = ".keras"
# The output layer of each head (looking_glass.model.deeplab.build_deeplabv3plus).
HEAD_OUTPUTS = {"binary": "building_prob", "sdt": "signed_distance_m"}


class ModelFileError(LookingGlassError, ValueError):
    """A model path that is missing, not a Keras model, without a usable sidecar, or whose model
    does not match its sidecar; the message is one line for the user (exit status 2)."""

    exit_code = EXIT_BAD_INPUT


@dataclass(frozen=True)
class ModelFile:
    """A checked model: its ``.keras`` file (absolute) and its sidecar."""

    path: Path
    sidecar: dict


def resolve_model_path(spec, what: str = "--model", label: str | None = None) -> Path:
    """The absolute ``.keras`` file ``spec`` names: itself, the model beside a ``.json`` sidecar,
    or the one ``.keras`` file in a folder. Messages start with ``label`` (default ``what``, the
    option, and ``spec``). Raises
    :class:`ModelFileError` (nothing there, a sidecar without its model, a folder without
    exactly one model)."""
    text = str(spec).strip()
    if not text:
        raise ModelFileError(f"{label or what}: empty model path")
    label = label or f"{what} {text}"
    path = Path(text).expanduser()
    if path.is_dir():
        found = sorted(p for p in path.rglob(f"*{MODEL_SUFFIX}") if p.is_file())
        if len(found) != 1:
            names = ", ".join(str(p.relative_to(path)) for p in found[:5])
            raise ModelFileError(f"{label}: the folder holds {len(found)} {MODEL_SUFFIX} model files"
                                 f"{' (' + names + ')' if found else ''}, expected exactly one (with its sidecar)")
        path = found[0]
    elif path.suffix == SIDECAR_SUFFIX and path.is_file():
        model = path.with_suffix(MODEL_SUFFIX)
        if not model.is_file():
            raise ModelFileError(f"{label}: that is a sidecar; its model {model} does not exist")
        path = model
    elif not path.exists():
        raise ModelFileError(f"{label}: no such file or folder")
    elif not path.is_file():
        raise ModelFileError(f"{label}: not a file or folder")
    return path.resolve()


def _check_archive(path: Path, label: str) -> dict:
    """A Keras v3 archive: a zip holding ``config.json`` whose members' CRCs are intact; returns
    that config (``{}`` when it is not a JSON object)."""
    if not zipfile.is_zipfile(path):
        raise ModelFileError(f"{label}: not a Keras model file (a {MODEL_SUFFIX} file is a zip archive): corrupt?")
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            bad = archive.testzip()
            config = archive.read("config.json") if bad is None and "config.json" in names else b"{}"
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise ModelFileError(f"{label}: the Keras archive cannot be read ({exc}): corrupt?") from None
    if bad is not None:
        raise ModelFileError(f"{label}: the Keras archive's member {bad} is damaged (CRC mismatch): corrupt?")
    if "config.json" not in names:
        raise ModelFileError(f"{label}: a zip archive without Keras's config.json, not a {MODEL_SUFFIX} model")
    try:
        doc = json.loads(config)
    except ValueError:
        raise ModelFileError(f"{label}: the Keras archive's config.json is not JSON: corrupt?") from None
    return doc if isinstance(doc, dict) else {}


def _layer_name(ref) -> str | None:
    """The layer name of a functional model's ``input_layers``/``output_layers`` entry: Keras
    writes ``[name, 0, 0]`` for one tensor and ``[[name, 0, 0], ...]`` for several."""
    if isinstance(ref, list) and ref and isinstance(ref[0], list):
        ref = ref[0] if len(ref) == 1 else None
    return ref[0] if isinstance(ref, list) and ref and isinstance(ref[0], str) else None


def check_archive_config(model_config: dict, config: dict, label: str) -> None:
    """Without TensorFlow: the model's own ``config.json`` (``model_config``, a Keras functional
    model) against its sidecar's ``config``: the input layer's ``batch_shape`` must be
    ``input_size`` px RGB (when the sidecar names a size) and the output layer the ``head``'s
    (:data:`HEAD_OUTPUTS`, default binary) with one filter. A config of another shape (not a
    functional model) is left to :func:`check_loadable`. Raises :class:`ModelFileError` with the
    messages :func:`check_loadable` gives."""
    body = model_config.get("config")
    if not isinstance(body, dict) or not isinstance(body.get("layers"), list):
        return
    layers = {layer.get("name"): layer.get("config") or {} for layer in body["layers"] if isinstance(layer, dict)}
    head = str(config.get("head", "binary"))
    shape = layers.get(_layer_name(body.get("input_layers")), {}).get("batch_shape")
    size = config.get("input_size")
    if isinstance(shape, list) and len(shape) == 4:
        shape_in = tuple(shape[1:])
        want_in = (size, size, 3) if size is not None else (*shape_in[:2], 3)
        if shape_in != want_in:
            said = f"its sidecar says input_size {size}" if size is not None else "tiles are RGB"
            raise ModelFileError(f"{label}: the model takes input {shape_in}, but {said} (expected {want_in})")
    out = _layer_name(body.get("output_layers"))
    if out is not None and (out != HEAD_OUTPUTS.get(head) or layers.get(out, {}).get("filters", 1) != 1):
        raise ModelFileError(f"{label}: the model has its output from layer {out!r}, not the {head} head "
                             f"({HEAD_OUTPUTS.get(head)!r}, one channel) its sidecar names")


def read_model_sidecar(path: Path, label: str) -> dict:
    """The sidecar of the model file ``path`` as a dict with ``model_id`` and ``version`` (and a
    ``config`` object if it has one). Raises :class:`ModelFileError`."""
    side = sidecar_path(path)
    if not side.is_file():
        raise ModelFileError(f"{label}: no sidecar {side} (the model's id, version and config live beside it)")
    try:
        meta = json.loads(side.read_text())
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"{label}: the sidecar {side} is not readable JSON: {exc}") from None
    if not isinstance(meta, dict):
        raise ModelFileError(f"{label}: the sidecar {side} is not a JSON object")
    missing = [k for k in ("model_id", "version") if k not in meta]
    if missing:
        raise ModelFileError(f"{label}: the sidecar {side} lacks {', '.join(missing)}")
    if "config" in meta and not isinstance(meta["config"], dict):
        raise ModelFileError(f"{label}: the sidecar {side} has a config that is not a JSON object")
    return meta


def check_loadable(path: Path, config: dict, label: str):
    """The Keras model at ``path``, loaded and checked against ``config`` (a sidecar's config:
    ``input_size`` if it names one, and ``head``, default binary): its input must be
    ``input_size`` px RGB and its output one channel of that size from the head's layer. Raises
    :class:`ModelFileError` (the model cannot be loaded, or does not match)."""
    import keras

    try:
        model = keras.saving.load_model(path, compile=False)
    except Exception as exc:  # noqa: BLE001 -- any failure to load is the same error for the user
        raise ModelFileError(f"{label}: cannot be loaded by Keras ({type(exc).__name__}: {exc}): corrupt?") from None
    head = str(config.get("head", "binary"))  # the segmenter's default too
    shape_in, shape_out = tuple(model.input.shape)[1:], tuple(model.output.shape)[1:]
    size = config.get("input_size")
    want_in = (size, size, 3) if size is not None else (*shape_in[:2], 3)
    if shape_in != want_in:
        said = f"its sidecar says input_size {size}" if size is not None else "tiles are RGB"
        raise ModelFileError(f"{label}: the model takes input {shape_in}, but {said} (expected {want_in})")
    want_out = (*want_in[:2], 1)
    layer = model.layers[-1].name
    if shape_out != want_out or layer != HEAD_OUTPUTS.get(head):
        raise ModelFileError(f"{label}: the model has output {shape_out} from layer {layer!r}, not the {head} head "
                             f"({HEAD_OUTPUTS.get(head)!r}, {want_out}) its sidecar names")
    return model


def check_model_file(spec, what: str = "--model", load: bool = False, label: str | None = None) -> ModelFile:
    """``spec`` resolved (:func:`resolve_model_path`) and checked: a Keras archive with a sidecar
    naming ``model_id`` and ``version``, its ``config.json`` matching the sidecar
    (:func:`check_archive_config`); with ``load`` also loadable and matching it
    (:func:`check_loadable`, which starts TensorFlow). Messages start with ``label`` (default
    ``what`` and ``spec``: a fetched model's label names where it came from, not a temporary
    path). Raises :class:`ModelFileError`."""
    path = resolve_model_path(spec, what, label)
    if label is None:
        same = Path(str(spec)).expanduser().resolve() == path
        label = f"{what} {spec}" if same else f"{what} {spec} ({path.name})"
    model_config = _check_archive(path, label)
    meta = read_model_sidecar(path, label)
    check_archive_config(model_config, meta.get("config") or {}, label)
    if load:
        check_loadable(path, meta.get("config") or {}, label)
    return ModelFile(path, meta)
