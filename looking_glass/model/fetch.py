"""Fetch a model from S3 for the inference worker's container.

    python -m looking_glass.model.fetch        (reads LG_MODEL_S3_URI and LG_MODEL_DIR)

``LG_MODEL_S3_URI`` (cdk.json ``model_s3_uri``) names either a ``.keras`` file, whose JSON
sidecar (same name, ``.json``) is fetched from beside it, or a SageMaker ``model.tar.gz`` (or
``.tgz``) from the training stack, which must hold exactly one ``.keras`` file (and its
sidecar). The files go to ``LG_MODEL_DIR`` (default ``/tmp/model``); the program prints the
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

ENV_MODEL_S3_URI = "LG_MODEL_S3_URI"
ENV_MODEL_DIR = "LG_MODEL_DIR"
DEFAULT_MODEL_DIR = "/tmp/model"
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz")
EXIT_NO_MODEL = 3
EXIT_USAGE = 2


class ModelFetchError(LookingGlassError, RuntimeError):
    """The model cannot be fetched (a bad URI, a missing object, an archive without one model)."""


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """(bucket, key) of ``s3://bucket/key``; raises :class:`ModelFetchError` without both."""
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    if not uri.startswith("s3://") or not bucket or not key:
        raise ModelFetchError(f"not an s3://bucket/key URI: {uri!r}")
    return bucket, key


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
    return model


def main(environ=None) -> int:
    """Fetch ``LG_MODEL_S3_URI`` into ``LG_MODEL_DIR`` and print the model path; the exit code
    (0; 3 the model cannot be fetched; 2 ``LG_MODEL_S3_URI`` is not set)."""
    environ = os.environ if environ is None else environ
    uri = environ.get(ENV_MODEL_S3_URI, "")
    if not uri:
        print(f"{ENV_MODEL_S3_URI} is not set: no model to fetch", file=sys.stderr, flush=True)
        return EXIT_USAGE
    try:
        model = fetch_model(uri, environ.get(ENV_MODEL_DIR, DEFAULT_MODEL_DIR))
    except Exception as exc:  # noqa: BLE001 - any failure is fatal and must say why
        print(f"cannot fetch model {uri}: {exc}", file=sys.stderr, flush=True)
        return EXIT_NO_MODEL
    print(model, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
