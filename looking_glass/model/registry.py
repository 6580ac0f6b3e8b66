"""Models as versioned, promotable things: a registry in S3 and the active model in SSM.

Layout: every model version lands under one prefix of the registry bucket (a deployment's
training bucket, or the embedded run's masks bucket)::

    registry/<model_id>/<version>/model.keras     the model
    registry/<model_id>/<version>/model.json      its sidecar (metrics, data, hyperparameters,
                                                  ``parent`` for fine-tunes, ``registered``)
    registry/<model_id>/<version>/model.onnx      its ONNX export, when the sidecar names one

A version, once registered, is never overwritten. The deployment's **active model** is the
``s3://`` URI of a registered ``model.keras`` held in one SSM parameter
(:func:`parameter_name`); workers read it when they start (``LG_MODEL_PARAMETER``, see
:func:`resolve_worker_model` and :mod:`looking_glass.model.fetch`), so making another version
active needs no redeploy, and going back is the same operation. :func:`use` refuses a version
that is not registered and then changes nothing.

The model shipped in the package (and the workers' image) is never registered: it is what runs
when no version is active. :func:`use` of ``shipped`` (or ``default``, or the shipped model's own
``<model_id>/<version>``, version or ``v<version>``: :func:`shipped_record`) deletes the
parameter, so the deployment goes back to it (the embedded run's ``up --model FILE`` still wins).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone

from looking_glass.errors import EXIT_BAD_INPUT, LookingGlassError
from looking_glass.model.fetch import active_uri
from looking_glass.model.sidecar import sidecar_path

REGISTRY_PREFIX = "registry/"
MODEL_FILE = "model.keras"
SIDECAR_FILE = "model.json"
ONNX_FILE = "model.onnx"
# The worker setting that names the SSM parameter holding the active model's URI.
ENV_MODEL_PARAMETER = "LG_MODEL_PARAMETER"
PARAMETER_PREFIX = "/looking-glass/"
# Names `models use` takes for the shipped model besides its own id/version (see shipped_record).
SHIPPED_ALIASES = ("shipped", "default")
# How a job records the shipped model and a local model file (looking_glass.model.identity).
SHIPPED_MODEL_PREFIX, FILE_MODEL_PREFIX = "shipped:", "file:"
VERSION_CHARS = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")


class RegistryError(LookingGlassError, ValueError):
    """A model that cannot be registered or made active; the message is the user's to see."""

    exit_code = EXIT_BAD_INPUT


def parameter_name(deployment_name: str) -> str:
    """The SSM parameter of a deployment's active model, e.g. ``/looking-glass/LookingGlass/active-model``."""
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in deployment_name).strip("-") or "default"
    return f"{PARAMETER_PREFIX}{safe}/active-model"


def model_prefix(model_id: str, version: str) -> str:
    """``registry/<model_id>/<version>/``; raises :class:`RegistryError` for unusable names."""
    for what, value in (("model_id", model_id), ("version", version)):
        if not value or not set(str(value)) <= VERSION_CHARS:
            raise RegistryError(f"{what} {value!r} cannot name a registry folder (letters, digits, . _ - only)")
    return f"{REGISTRY_PREFIX}{model_id}/{version}/"


@dataclass(frozen=True)
class ModelRecord:
    """One registered model version."""

    model_id: str
    version: str
    uri: str  # s3://bucket/registry/<id>/<version>/model.keras
    sidecar: dict

    @property
    def name(self) -> str:
        """``<model_id>/<version>``, how commands name it."""
        return f"{self.model_id}/{self.version}"

    def summary(self, active_uri: str | None = None) -> dict:
        """What ``looking-glass models`` prints of it."""
        val = self.sidecar.get("validation") or {}
        parent = self.sidecar.get("parent") or None
        return {
            "model_id": self.model_id,
            "version": self.version,
            "active": self.uri == active_uri,
            "val_iou": val.get("val_iou"),
            "val_f1": val.get("val_f1"),
            "registered": self.sidecar.get("registered"),
            "parent": None if parent is None else f"{parent.get('model_id')}/{parent.get('version')}",
            "uri": self.uri,
            "validated_on": validation_data(self.sidecar),
            "real_imagery": real_imagery_figure(self.sidecar),
        }


def shipped_record() -> ModelRecord:
    """The model shipped in the package as a record: its sidecar's ``model_id`` and ``version``,
    and ``uri`` "" (it lives in the workers' image, not in a registry; "" is also what a job
    records for it, see :func:`model_label`)."""
    from looking_glass.model.segmenter import SHIPPED_MODEL

    try:
        meta = json.loads(sidecar_path(SHIPPED_MODEL).read_text())
    except (OSError, ValueError):
        meta = {}
    meta = meta if isinstance(meta, dict) else {}
    return ModelRecord(str(meta.get("model_id") or "shipped"), str(meta.get("version") or "0"), "", meta)


def model_label(uri: str) -> str:
    """A short name for the model a job was submitted with (its record's ``model``): ``ID/VERSION``
    for a registered ``s3://BUCKET/registry/ID/VERSION/model.keras``, ``default`` for "" (the
    deployment's own model: ``LG_MODEL_PATH`` or the one shipped in their image, no version
    made active; a job recorded before jobs kept their model), ``ID/VERSION`` for the shipped
    model's ``shipped:ID/VERSION`` and a local file's ``file:PATH#ID/VERSION@sha256:HEX``
    (:mod:`looking_glass.model.identity`), any other URI as it is."""
    if not uri:
        return "default"
    if uri.startswith(SHIPPED_MODEL_PREFIX):
        return uri[len(SHIPPED_MODEL_PREFIX):]
    if uri.startswith(FILE_MODEL_PREFIX) and "#" in uri:
        return uri.rpartition("#")[2].rpartition("@sha256:")[0] or uri
    if uri.startswith("s3://"):
        key = uri[5:].partition("/")[2]
        parts = key[len(REGISTRY_PREFIX):].split("/") if key.startswith(REGISTRY_PREFIX) else []
        if len(parts) == 3 and parts[2] == MODEL_FILE and all(parts[:2]):
            return f"{parts[0]}/{parts[1]}"
    return uri


def run_label(model_id, version) -> str:
    """How a tile result names the model that produced it (its ``model_id`` and ``model_version``,
    recorded by the worker): ``ID/VERSION`` (the form :func:`model_label` gives a registered
    model), ``ID`` without a version, "" when the result records neither (a result stored before
    they were)."""
    model_id, version = str(model_id or ""), str(version or "")
    return f"{model_id}/{version}" if model_id and version else model_id


def real_imagery_figure(sidecar: dict) -> str | None:
    """The evaluation on real imagery a model's sidecar records, as a phrase (``object F1 0.023
    (pixel IoU 0.109) on <dataset>``), from its ``real_imagery.headline`` member (``dataset``,
    ``object_f1`` and/or ``pixel_iou``, ``command``); None when it records none."""
    real = sidecar.get("real_imagery") if isinstance(sidecar, dict) else None
    head = real.get("headline") if isinstance(real, dict) else None
    if not isinstance(head, dict):
        return None
    figures = [f"{name} {float(head[k]):.3f}" for k, name in (("object_f1", "object F1"), ("pixel_iou", "pixel IoU"))
               if isinstance(head.get(k), (int, float)) and not isinstance(head.get(k), bool)]
    if not figures:
        return None
    more = f" ({', '.join(figures[1:])})" if figures[1:] else ""
    return f"{figures[0]}{more} on {head.get('dataset') or 'real imagery'}"


def validation_data(sidecar: dict) -> str:
    """Where a model's ``validation`` figures (``val_iou``, ``val_f1``) were measured, as a phrase
    from what its training recorded (``training.data.validation``: chips, the channel's ``path``
    and ``resolved_path``, the dataset manifest's ``mode``; ``training.job``): ``1264 synthetic
    chips (synth-data)``, ``the validation split of /data/west (12 chips)``, ``the validation
    channel of SageMaker training job NAME (12 chips)``; "not recorded" when the sidecar says
    nothing of it. Those chips come from the data the model was trained on, never a user's
    imagery."""
    training = sidecar.get("training") if isinstance(sidecar, dict) else None
    data = training.get("data") if isinstance(training, dict) else None
    val = data.get("validation") if isinstance(data, dict) else None
    if not isinstance(val, dict):
        return "not recorded"
    chips = val.get("chips")
    count = f"{chips} chips" if isinstance(chips, int) and not isinstance(chips, bool) else "chips"
    manifest = val.get("manifest") if isinstance(val.get("manifest"), dict) else {}
    if manifest.get("mode") == "synthetic":
        return f"{count.replace('chips', 'synthetic chips')} (synth-data), not real imagery"
    path = str(val.get("resolved_path") or val.get("path") or "")
    job = training.get("job")
    if job and (not path or path.startswith("/opt/ml/")):  # SageMaker's own channel folder says nothing
        return f"the validation channel of SageMaker training job {job} ({count})"
    if not path:
        return f"{count}, from data not recorded"
    what = "the validation split of" if val.get("kind") == "dataset" else "the shards in"
    return f"{what} {path} ({count})"


def run_sidecar(s3, bucket: str, run: str) -> dict | None:
    """The sidecar of the model a tile result names (``run``: :func:`run_label`'s ``ID/VERSION``):
    the shipped model's when it is that one, else the registered version's in ``bucket``
    (``registry/ID/VERSION/model.json``); None when neither is found or readable."""
    from botocore.exceptions import BotoCoreError, ClientError

    shipped = shipped_record()
    if run and run == run_label(shipped.sidecar.get("model_id"), shipped.sidecar.get("version")):
        return shipped.sidecar
    model_id, _, version = run.partition("/")
    if not model_id or not version or not set(run) - {"/"} <= VERSION_CHARS:
        return None
    try:
        body = s3.get_object(Bucket=bucket, Key=f"{REGISTRY_PREFIX}{model_id}/{version}/{SIDECAR_FILE}")["Body"].read()
        meta = json.loads(body)
    except (ClientError, BotoCoreError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def _bucket_key(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    if not uri.startswith("s3://") or not bucket or not key:
        raise RegistryError(f"not an s3://bucket/key URI: {uri!r}")
    return bucket, key


def _exists(s3, bucket: str, key: str) -> bool:
    from botocore.exceptions import ClientError

    try:
        s3.head_object(Bucket=bucket, Key=key)
        return True
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return False
        raise


def register(s3, bucket: str, model_path, version: str | None = None, model_id: str | None = None,
             label: str | None = None) -> ModelRecord:
    """Upload a local model (``.keras`` + sidecar, and its ONNX export if the sidecar names one)
    as ``registry/<model_id>/<version>/``; ids default to the sidecar's. ``model_path`` is what
    every command takes (a ``.keras`` file, its sidecar or a folder holding one), checked before
    anything is uploaded as ``train --init`` checks its model: a Keras archive that Keras loads,
    whose input and output match its sidecar
    (:func:`looking_glass.model.model_file.check_model_file`; ``label`` names it in messages,
    default the path). The sidecar uploaded gains ``registered`` (UTC time) and
    ``registry_uri``. Raises :class:`RegistryError` if the model is missing, corrupt or does not
    match its sidecar, or that version is already registered.
    """
    from looking_glass.model.model_file import ModelFileError, check_loadable, check_model_file

    label = f"cannot register {label or model_path}"
    try:
        checked = check_model_file(model_path, label=label)  # the quick checks first, without TensorFlow
    except ModelFileError as e:
        raise RegistryError(str(e)) from None
    model, meta = checked.path, checked.sidecar
    model_id = model_id or meta.get("model_id")
    version = str(version or meta.get("version") or "")
    prefix = model_prefix(str(model_id or ""), version)
    if _exists(s3, bucket, prefix + SIDECAR_FILE):
        raise RegistryError(f"{model_id} version {version} is already registered (s3://{bucket}/{prefix}); "
                            "a version is never overwritten: give another --version")
    try:
        check_loadable(model, meta.get("config") or {}, label)
    except ModelFileError as e:
        raise RegistryError(str(e)) from None
    uri = f"s3://{bucket}/{prefix}{MODEL_FILE}"
    meta = {**meta, "model_id": model_id, "version": version,
            "registered": datetime.now(timezone.utc).isoformat(timespec="seconds"), "registry_uri": uri}
    onnx = (meta.get("onnx") or {}).get("file")
    if onnx and (model.parent / onnx).is_file():
        s3.upload_file(str(model.parent / onnx), bucket, prefix + ONNX_FILE)
        meta["onnx"] = {**meta["onnx"], "file": ONNX_FILE}
    s3.upload_file(str(model), bucket, prefix + MODEL_FILE)
    s3.put_object(Bucket=bucket, Key=prefix + SIDECAR_FILE, Body=(json.dumps(meta, indent=2) + "\n").encode(),
                  ContentType="application/json")
    return ModelRecord(str(model_id), version, uri, meta)


def register_artifact(s3, bucket: str, artifact_uri: str, version: str | None = None) -> ModelRecord:
    """Register a training job's output (``s3://.../output/model.tar.gz`` holding ``model.keras``
    and its sidecar, or a ``.keras`` with its sidecar beside it); the version defaults to the
    sidecar's (the training job's name). Raises :class:`RegistryError`."""
    import tempfile

    from looking_glass.model.fetch import fetch_model

    with tempfile.TemporaryDirectory(prefix="lg-register-") as tmp:
        try:
            model = fetch_model(artifact_uri, tmp, s3=s3)
        except Exception as e:  # noqa: BLE001 -- a missing object, an archive without one model
            raise RegistryError(f"cannot fetch the trained model {artifact_uri}: {e}") from None
        return register(s3, bucket, model, version=version, label=artifact_uri)


def list_models(s3, bucket: str) -> list[ModelRecord]:
    """Every registered version (sidecars read), oldest registration first."""
    records = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=REGISTRY_PREFIX):
        for obj in page.get("Contents", []):
            parts = obj["Key"][len(REGISTRY_PREFIX):].split("/")
            if len(parts) != 3 or parts[2] != SIDECAR_FILE:
                continue
            try:
                meta = json.loads(s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read())
            except ValueError:
                meta = {"unreadable": True}
            uri = f"s3://{bucket}/{REGISTRY_PREFIX}{parts[0]}/{parts[1]}/{MODEL_FILE}"
            records.append(ModelRecord(parts[0], parts[1], uri, meta if isinstance(meta, dict) else {}))
    return sorted(records, key=lambda r: (str(r.sidecar.get("registered") or ""), r.name))


def _without_v(version: str) -> str:
    """``version`` with a leading 'v' before a digit dropped from its version part ("v3" -> "3",
    "m/v3" -> "m/3"): how docs and plots name version "3"."""
    model_id, slash, last = version.rpartition("/")
    if len(last) > 1 and last[0] in "vV" and last[1].isdigit():
        last = last[1:]
    return f"{model_id}{slash}{last}"


def find(records: list[ModelRecord], version: str) -> ModelRecord:
    """The record named ``version`` (``<version>`` or ``<model_id>/<version>``; a leading 'v', as
    in "v3", is accepted when the version without it is registered); raises
    :class:`RegistryError` for an unknown or ambiguous name, listing the known ones and the
    closest ("did you mean ...?")."""
    import difflib

    known = [f"{r.name} (shipped)" if not r.uri else r.name for r in records]
    matches = [r for r in records if version in (r.name, r.version)]
    if not matches and _without_v(version) != version:
        matches = [r for r in records if _without_v(version) in (r.name, r.version)]
    if not matches:
        names = sorted({*known, *(r.version for r in records)})
        close = difflib.get_close_matches(_without_v(version), names, n=1, cutoff=0.5)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise RegistryError(f"no registered model version {version!r}; known: {', '.join(known) or 'none'}{hint}")
    if len(matches) > 1:
        raise RegistryError(f"{version!r} names {len(matches)} models ({', '.join(r.name for r in matches)}): "
                            "give <model_id>/<version>")
    return matches[0]


def use(s3, ssm, bucket: str, parameter: str, version: str) -> tuple[ModelRecord, str | None]:
    """Make ``version`` the active model: (its record, the previously active URI). The model and
    its sidecar must be registered, or ``version`` names the shipped model (:data:`SHIPPED_ALIASES`
    or its own id/version, :func:`shipped_record`): then no version is active any more (the
    parameter is deleted) and the workers run the shipped model. Otherwise :class:`RegistryError`
    and nothing changes. A registered version with the shipped model's name is that one."""
    shipped = shipped_record()
    if version.strip().lower() in SHIPPED_ALIASES:
        record = shipped
    else:
        records = list_models(s3, bucket)
        if shipped.name not in {r.name for r in records}:
            records.append(shipped)
        record = find(records, version)
    previous = active_uri(ssm, parameter)
    if not record.uri:
        if previous is not None:
            try:
                ssm.delete_parameter(Name=parameter)
            except ssm.exceptions.ParameterNotFound:  # deleted meanwhile: the same end
                pass
        return record, previous
    bucket_name, key = _bucket_key(record.uri)
    if not _exists(s3, bucket_name, key):
        raise RegistryError(f"{record.name} has a sidecar but no {MODEL_FILE} ({record.uri}): not made active")
    check_registered(s3, record)
    previous = active_uri(ssm, parameter)
    ssm.put_parameter(Name=parameter, Value=record.uri, Type="String", Overwrite=True,
                      Description="looking-glass: the active model (s3:// URI of a registered model.keras)")
    return record, previous


def check_registered(s3, record: ModelRecord) -> None:
    """Fetch a registered version and check it as :func:`register` does (a version registered
    before that check may be corrupt); raises :class:`RegistryError` naming the version and its
    URI, so :func:`use` makes nothing active that no worker could load."""
    import tempfile

    from looking_glass.model.fetch import fetch_model
    from looking_glass.model.model_file import ModelFileError, check_model_file

    with tempfile.TemporaryDirectory(prefix="lg-use-") as tmp:
        try:
            path = fetch_model(record.uri, tmp, s3=s3)
        except Exception as e:  # noqa: BLE001 -- a missing object, an unreadable sidecar
            raise RegistryError(f"{record.name}: cannot fetch {record.uri}: {e}: not made active") from None
        try:
            check_model_file(path, load=True, label=f"{record.name} ({record.uri})")
        except ModelFileError as e:
            raise RegistryError(f"{e}; not made active") from None


def model_source(model_path: str) -> str:
    """How a worker's "cannot load model" line names the model at ``model_path``: a registered
    version fetched into a temporary folder by its ``ID/VERSION (s3://...)`` (its sidecar's
    ``registry_uri``, written by :func:`register`), any other path quoted, "" as "(shipped)"."""
    if not model_path:
        return "(shipped)"
    try:
        meta = json.loads(sidecar_path(model_path).read_text())
    except (OSError, ValueError):
        meta = None
    if isinstance(meta, dict) and meta.get("registry_uri"):
        return f"{meta.get('model_id')}/{meta.get('version')} ({meta['registry_uri']})"
    return repr(str(model_path))


def resolve_worker_model(environ=None, ssm=None, s3=None, dest=None) -> str:
    """The model a worker starting now loads: ``LG_MODEL_PATH`` if set; else, with
    ``LG_MODEL_PARAMETER`` set and the parameter holding a URI, that model fetched into ``dest``
    (default ``$LG_MODEL_DIR`` or a temporary folder); else "" (the shipped model)."""
    environ = os.environ if environ is None else environ
    if environ.get("LG_MODEL_PATH"):
        return environ["LG_MODEL_PATH"]
    parameter = environ.get(ENV_MODEL_PARAMETER, "")
    if not parameter:
        return ""
    import boto3

    uri = active_uri(ssm or boto3.client("ssm"), parameter)
    if not uri:
        return ""
    from looking_glass.model.fetch import fetch_model

    if dest is None:
        import tempfile

        dest = environ.get("LG_MODEL_DIR") or tempfile.mkdtemp(prefix="lg-model-")
    return str(fetch_model(uri, dest, s3=s3))
