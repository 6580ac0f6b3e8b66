"""Asset sources: the staged Lambda code directory and the Docker build context of the images.

Nothing here runs Docker. The Lambda asset is a plain directory staged at synth time; the two
images are Docker image assets, which ``cdk synth`` only records (their build context is copied
into cdk.out) and ``cdk deploy`` builds and pushes.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from pathlib import Path

from looking_glass import SOURCE_ROOT

REPO_ROOT = SOURCE_ROOT
# Outside cdk.out, so `cdk synth -o elsewhere` and the tests all reuse it; .gitignored (build/).
LAMBDA_BUILD_ROOT = REPO_ROOT / "build" / "lambda-asset"

# What the enumerator Lambda needs from the source tree: the core package and the handlers.
LAMBDA_SOURCES = ("looking_glass", "lambdas")
# Never in the Lambda: bytecode, the (large) Keras models, and the worker-only TF modules.
_SKIP_DIRS = {"__pycache__", ".pytest_cache", ".mypy_cache"}
_SKIP_PATHS = {Path("looking_glass/models")}
_SKIP_SUFFIXES = {".pyc", ".pyo", ".keras", ".h5", ".hdf5", ".tflite", ".ckpt"}
_TF_IMPORT = re.compile(rb"^\s*(?:import|from)\s+(?:tensorflow|keras|tf_keras)\b", re.MULTILINE)

# Docker build context of both images: the repository root, reduced to what the images use.
# Docker-style patterns (IgnoreMode.DOCKER): exclude everything, then re-include. The same
# patterns keep `cdk synth` from hashing .venv or node_modules.
DOCKER_CONTEXT_EXCLUDES = [
    "*",
    "!pyproject.toml",
    "!README.md",
    "!LICENSE",
    "!looking_glass",
    "!batch_jobs",
    "!training",
    "**/__pycache__",
    "**/*.pyc",
]


def _lambda_files(root: Path) -> list[Path]:
    """Relative paths of the files that go into the Lambda asset, sorted."""
    files: list[Path] = []
    for top in LAMBDA_SOURCES:
        for dirpath, dirnames, filenames in os.walk(root / top):
            rel_dir = Path(dirpath).relative_to(root)
            dirnames[:] = sorted(
                d for d in dirnames if d not in _SKIP_DIRS and rel_dir / d not in _SKIP_PATHS
            )
            for name in sorted(filenames):
                rel = rel_dir / name
                if rel.suffix in _SKIP_SUFFIXES:
                    continue
                if rel.suffix == ".py" and _TF_IMPORT.search((root / rel).read_bytes()):
                    continue  # imports TensorFlow/Keras: worker or training code, not the Lambda's
                files.append(rel)
    return files


def stage_lambda_asset(root: Path = REPO_ROOT, build_root: Path = LAMBDA_BUILD_ROOT) -> Path:
    """Copy the Lambda's sources into ``build_root/<content hash>`` and return that directory.

    Content-addressed and published by an atomic rename, so concurrent synths (pytest -n, a
    synth while tests run) never see a half-written directory, and unchanged code is not copied
    again. Only the Python sources are staged: see the dependency note in ``stacks.ingest``.
    """
    files = _lambda_files(root)
    digest = hashlib.sha256()
    for rel in files:
        digest.update(rel.as_posix().encode() + b"\0" + (root / rel).read_bytes() + b"\0")
    target = build_root / digest.hexdigest()[:16]
    if target.is_dir():
        os.utime(target)  # mark as in use for _prune
        return target
    build_root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".staging-", dir=build_root))
    try:
        for rel in files:
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / rel, tmp / rel)
        try:
            os.rename(tmp, target)
        except OSError:
            if not target.is_dir():  # lost a race only if the winner's copy is there
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    _prune(build_root, keep=target)
    return target


def _prune(build_root: Path, keep: Path, max_kept: int = 5) -> None:
    """Drop all but the newest few staged copies."""
    staged = sorted(
        (p for p in build_root.iterdir() if p.is_dir() and not p.name.startswith(".")),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    for old in staged[max_kept:]:
        if old != keep:
            shutil.rmtree(old, ignore_errors=True)


_ECR_IMAGE = re.compile(
    r"^(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/"
    r"(?P<repository>[a-z0-9][a-z0-9._/-]*?)(?::(?P<tag>[\w][\w.-]{0,127}))?(?:@(?P<digest>sha256:[0-9a-f]{64}))?$"
)


def parse_ecr_image(uri: str) -> tuple[str, str, str] | None:
    """(repository ARN, repository name, tag or digest) of an ECR image URI; None for other
    registries.

    Images in ECR are referenced through the repository so CDK grants the pull permissions.
    """
    from aws_cdk import Aws

    match = _ECR_IMAGE.match(uri)
    if not match:
        return None
    arn = (
        f"arn:{Aws.PARTITION}:ecr:{match['region']}:{match['account']}:repository/{match['repository']}"
    )
    return arn, match["repository"], match["digest"] or match["tag"] or "latest"
