"""Fetch a model from S3 for the inference worker's container.

    python -m looking_glass.model.fetch        (reads LG_MODEL_S3_URI or LG_MODEL_PARAMETER, and LG_MODEL_DIR)

``LG_MODEL_S3_URI`` (cdk.json ``model_s3_uri``) names either a ``.keras`` file, whose JSON
sidecar (same name, ``.json``) is fetched from beside it, or a SageMaker ``model.tar.gz`` (or
``.tgz``) from the training stack, which must hold exactly one ``.keras`` file (and its
sidecar, and its ONNX export ``.onnx`` if it has one). A ``.keras`` file's ONNX export
(:func:`looking_glass.model.onnx_export.onnx_key`: same name, ``.onnx``) is fetched from beside
it when it is there; a model without one still works (with Keras). Then, unless
``LG_RUNTIME=keras`` or ``LG_ONNX_EXPORT_AT_START=false``, a model without a usable ONNX export
is exported here (:func:`ensure_onnx`; a failure only means the worker runs Keras). The files
go to ``LG_MODEL_DIR`` (default ``/tmp/model``); the program prints the
local model path, which the worker image's launcher (``batch_jobs/Dockerfile``) exports as
``LG_MODEL_PATH`` before it runs the worker. Exit code 3 when the model cannot be fetched (the
worker's code for a model that cannot be loaded), with the reason on stderr.
"""

from __future__ import annotations

import os
import sys
import tarfile
from pathlib import Path, PurePosixPath

from looking_glass.errors import LookingGlassError
from looking_glass.model.onnx_export import onnx_key, onnx_path

ENV_MODEL_S3_URI = "LG_MODEL_S3_URI"
ENV_MODEL_DIR = "LG_MODEL_DIR"
# The SSM parameter holding the active model's URI (looking_glass.model.registry), read when
# LG_MODEL_S3_URI is not set.
ENV_MODEL_PARAMETER = "LG_MODEL_PARAMETER"
ENV_EXPORT_AT_START = "LG_ONNX_EXPORT_AT_START"
DEFAULT_MODEL_DIR = "/tmp/model"
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz")
EXIT_NO_MODEL = 3
EXIT_USAGE = 2
# What S3 answers for an object that is not there (403 without s3:ListBucket on the bucket).
MISSING_CODES = {"404", "403", "NoSuchKey", "NotFound", "AccessDenied"}


class ModelFetchError(LookingGlassError, RuntimeError):
    """The model cannot be fetched (a bad URI, a missing object, an archive without one model)."""


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """(bucket, key) of ``s3://bucket/key``; raises :class:`ModelFetchError` without both."""
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    if not uri.startswith("s3://") or not bucket or not key:
        raise ModelFetchError(f"not an s3://bucket/key URI: {uri!r}")
    return bucket, key


def active_uri(ssm, parameter: str) -> str | None:
    """The active model's URI, or ``None`` if none was made active (the shipped model runs)."""
    try:
        return ssm.get_parameter(Name=parameter)["Parameter"]["Value"] or None
    except ssm.exceptions.ParameterNotFound:
        return None


def fetch_model(uri: str, dest, s3=None) -> Path:
    """Download the model named by ``uri`` into ``dest`` (created); returns the ``.keras`` path.

    A ``.tar.gz``/``.tgz`` archive is downloaded as ``dest/model.tar.gz`` and extracted (tar's
    ``data`` filter: no absolute paths, links out or devices); it must hold exactly one
    ``.keras`` file. Any other key is a model file, downloaded with its sidecar (the key with
    its last suffix replaced by ``.json``). ``s3`` is a boto3 S3 client (default: a new one).
    Raises :class:`ModelFetchError`, or botocore's errors for S3 failures.
    """
    bucket, key = parse_s3_uri(uri)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    if s3 is None:
        import boto3

        s3 = boto3.client("s3")
    if key.endswith(ARCHIVE_SUFFIXES):
        archive = dest / "model.tar.gz"
        s3.download_file(bucket, key, str(archive))
        with tarfile.open(archive) as tar:
            tar.extractall(dest, filter="data")
        models = sorted(dest.rglob("*.keras"))
        if len(models) != 1:
            raise ModelFetchError(f"archive holds {len(models)} .keras files, expected 1")
        return models[0]
    model = dest / PurePosixPath(key).name
    s3.download_file(bucket, key, str(model))
    sidecar = key.rsplit(".", 1)[0] + ".json"
    s3.download_file(bucket, sidecar, str(model.with_suffix(".json")))
    fetch_optional(s3, bucket, onnx_key(key), onnx_path(model))
    return model


def fetch_optional(s3, bucket: str, key: str, target: Path) -> bool:
    """Download ``key`` to ``target`` if the object is there; False (and no ``target``) when S3
    says it is not (404, or 403 where the role may not list the bucket). Other errors raise."""
    from botocore.exceptions import ClientError

    target.unlink(missing_ok=True)  # never leave an older model's file in its place
    try:
        s3.download_file(bucket, key, str(target))
    except ClientError as exc:
        target.unlink(missing_ok=True)
        if str(exc.response.get("Error", {}).get("Code")) in MISSING_CODES:
            return False
        raise
    return True


def ensure_onnx(model: Path, out=None) -> bool:
    """Export ``model`` to ONNX here when it has no usable ONNX export
    (:func:`looking_glass.model.inference.onnx_problem`); True when a usable one is there after.
    A failure (tf2onnx not installed, a check that fails) is written to ``out`` (default
    stderr), not raised."""
    from looking_glass.model.inference import onnx_problem

    out = sys.stderr if out is None else out
    problem = onnx_problem(model)
    if problem is None:
        return True
    print(f"{model.name}: {problem}; exporting it to ONNX now", file=out, flush=True)
    try:
        from contextlib import redirect_stdout

        from looking_glass.model.onnx_export import export_onnx

        with redirect_stdout(out):  # stdout carries only the model path
            record = export_onnx(model)
    except Exception as exc:  # noqa: BLE001 - the worker still runs the .keras model
        print(f"ONNX export failed ({type(exc).__name__}: {exc}); the worker runs the Keras model",
              file=out, flush=True)
        return False
    print(f"exported {record['file']}: mask agreement {record['check']['mask_agreement']:.6f}", file=out, flush=True)
    return True


def main(environ=None) -> int:
    """Fetch ``LG_MODEL_S3_URI`` into ``LG_MODEL_DIR`` and print the model path; the exit code
    (0; 3 the model cannot be fetched; 2 ``LG_MODEL_S3_URI`` is not set)."""
    environ = os.environ if environ is None else environ
    uri = environ.get(ENV_MODEL_S3_URI, "")
    parameter = environ.get(ENV_MODEL_PARAMETER, "")
    if not uri and parameter:  # the deployment's active model (looking-glass models use)
        try:
            import boto3

            uri = active_uri(boto3.client("ssm"), parameter) or ""
        except Exception as exc:  # noqa: BLE001 - any failure is fatal and must say why
            print(f"cannot read the active model parameter {parameter}: {exc}", file=sys.stderr, flush=True)
            return EXIT_NO_MODEL
        if not uri:
            print(f"{parameter} names no active model: the image's shipped model runs", file=sys.stderr, flush=True)
            return EXIT_USAGE
    if not uri:
        print(f"{ENV_MODEL_S3_URI} is not set: no model to fetch", file=sys.stderr, flush=True)
        return EXIT_USAGE
    try:
        model = fetch_model(uri, environ.get(ENV_MODEL_DIR, DEFAULT_MODEL_DIR))
    except Exception as exc:  # noqa: BLE001 - any failure is fatal and must say why
        print(f"cannot fetch model {uri}: {exc}", file=sys.stderr, flush=True)
        return EXIT_NO_MODEL
    runtime = environ.get("LG_RUNTIME", "").strip().lower()
    if runtime != "keras" and environ.get(ENV_EXPORT_AT_START, "true").strip().lower() not in ("false", "0", "no"):
        ensure_onnx(model)
    print(model, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
