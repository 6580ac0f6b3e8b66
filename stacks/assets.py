"""Asset sources: the staged Lambda code directory and the Docker build context of the images.

Nothing here runs Docker. The Lambda asset is a plain directory staged at synth time: our
sources plus the core package's light dependencies, installed by pip as binary wheels for the
Lambda platform (CPython 3.12, manylinux x86_64) and cached in build/ by the hash of what was
asked for. The two images are Docker image assets, which ``cdk synth`` only records (their build
context is copied into cdk.out) and ``cdk deploy`` builds and pushes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

from looking_glass.errors import LookingGlassError

# The source checkout (stacks/ is not part of the installed package): what the assets are built from.
REPO_ROOT = Path(__file__).resolve().parent.parent
# Outside cdk.out, so `cdk synth -o elsewhere` and the tests all reuse them; .gitignored (build/).
LAMBDA_BUILD_ROOT = REPO_ROOT / "build" / "lambda-asset"
LAMBDA_DEPS_ROOT = REPO_ROOT / "build" / "lambda-deps"

# The Lambda platform the third-party packages are installed for (stacks.ingest uses the same
# runtime). The python3.12 runtime is Amazon Linux 2023 (glibc 2.34) on x86_64: manylinux2014
# (glibc 2.17) wheels run there, and so do manylinux_2_28 ones, which recent numpy releases ship
# instead; pip picks the newest wheel that matches any of the tags.
LAMBDA_PYTHON_VERSION = "3.12"
LAMBDA_PLATFORMS = ("manylinux2014_x86_64", "manylinux_2_28_x86_64")
# Not bundled: the Lambda Python runtime ships boto3 (with botocore and s3transfer), kept up to
# date by AWS, and the enumerator only uses long-stable S3, SQS, DynamoDB and Batch calls.
# Bundling it would add ~25 MB to every deployment for no new API.
RUNTIME_PROVIDED = frozenset({"boto3", "botocore", "s3transfer"})
# Installed by pip --target but useless in a Lambda (console scripts).
_DEPS_DROP = ("bin",)


class LambdaAssetError(LookingGlassError, RuntimeError):
    """The Lambda asset could not be built (e.g. pip could not reach the package index)."""

# What the enumerator Lambda needs from the source tree: the core package and the handlers.
LAMBDA_SOURCES = ("looking_glass", "lambdas")
# Never in the Lambda: bytecode, the (large) Keras models, and the worker-only TF modules.
_SKIP_DIRS = {"__pycache__", ".pytest_cache", ".mypy_cache"}
_SKIP_PATHS = {Path("looking_glass/model/shipped")}
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


def lambda_requirements(pyproject: Path = REPO_ROOT / "pyproject.toml") -> list[str]:
    """The core package's dependencies (pyproject.toml ``[project] dependencies``, pins and
    all), less what the Lambda runtime provides: what the enumerator imports besides our code."""
    deps = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    return [d for d in deps if _requirement_name(d) not in RUNTIME_PROVIDED]


def _requirement_name(requirement: str) -> str:
    name = re.match(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    if not name:
        raise LambdaAssetError(f"cannot read the package name of requirement {requirement!r}")
    return re.sub(r"[-_.]+", "-", name.group(1)).lower()


def install_lambda_dependencies(
    requirements: list[str] | None = None,
    *,
    python_version: str = LAMBDA_PYTHON_VERSION,
    platforms: tuple[str, ...] = LAMBDA_PLATFORMS,
    deps_root: Path = LAMBDA_DEPS_ROOT,
) -> Path:
    """``pip install --target`` the requirements as binary wheels for the Lambda platform, into
    ``deps_root/<hash of the request>``; an unchanged request reuses that directory (no pip run).

    Never Docker, never a build from source (``--only-binary=:all:``), so what is installed is
    exactly the wheels PyPI publishes for that platform, whatever machine runs synth.
    """
    requirements = lambda_requirements() if requirements is None else list(requirements)
    request = {
        "requirements": requirements,
        "python_version": python_version,
        "platforms": list(platforms),
        "implementation": "cp",
    }
    key = hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()[:16]
    target = deps_root / key
    if target.is_dir():
        os.utime(target)  # mark as in use for _prune
        return target
    deps_root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".installing-", dir=deps_root))
    cmd = [
        sys.executable, "-m", "pip", "install",
        "--quiet", "--disable-pip-version-check", "--no-input", "--no-compile",
        "--implementation", "cp",
        "--python-version", python_version,
        *(arg for platform in platforms for arg in ("--platform", platform)),
        "--only-binary=:all:",
        "--target", str(tmp),
        *requirements,
    ]
    try:
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise LambdaAssetError(f"pip could not run for the Lambda dependencies: {exc}") from None
        if done.returncode != 0:
            raise LambdaAssetError(
                "pip could not install the Lambda dependencies "
                f"({' '.join(requirements)}) for CPython {python_version} on "
                f"{', '.join(platforms)} (the first synth needs the package index):\n"
                + (done.stderr or done.stdout)[-3000:]
            )
        for name in _DEPS_DROP:
            shutil.rmtree(tmp / name, ignore_errors=True)
        for cache in list(tmp.rglob("__pycache__")):
            shutil.rmtree(cache, ignore_errors=True)
        (tmp / ".lambda-deps.json").write_text(json.dumps(request, indent=1, sort_keys=True))
        try:
            os.rename(tmp, target)
        except OSError:
            if not target.is_dir():  # lost a race only if the winner's copy is there
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    _prune(deps_root, keep=target, max_kept=3)
    return target


def _link_or_copy(src: str, dst: str) -> None:
    """Hard-link a file of the (immutable) dependency directory; copy across file systems."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def stage_lambda_asset(
    root: Path = REPO_ROOT,
    build_root: Path = LAMBDA_BUILD_ROOT,
    *,
    deps: Path | None = None,
) -> Path:
    """The Lambda's code directory: our sources (``LAMBDA_SOURCES``) plus the third-party
    packages of ``install_lambda_dependencies`` (``deps``, by default the cached install for the
    Lambda platform), staged into ``build_root/<content hash>`` and returned.

    Content-addressed and published by an atomic rename, so concurrent synths (pytest -n, a
    synth while tests run) never see a half-written directory, and unchanged code is not copied
    again. The directory name is the asset hash (``stacks.ingest``), so CDK need not re-hash the
    dependencies on every synth.
    """
    if deps is None:
        deps = install_lambda_dependencies()
    files = _lambda_files(root)
    digest = hashlib.sha256(b"deps\0" + deps.name.encode() + b"\0")
    for rel in files:
        digest.update(rel.as_posix().encode() + b"\0" + (root / rel).read_bytes() + b"\0")
    target = build_root / digest.hexdigest()[:16]
    if target.is_dir():
        os.utime(target)  # mark as in use for _prune
        return target
    build_root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".staging-", dir=build_root))
    try:
        shutil.copytree(
            deps, tmp, copy_function=_link_or_copy, dirs_exist_ok=True,
            ignore=shutil.ignore_patterns(".lambda-deps.json"),
        )
        for top in LAMBDA_SOURCES:
            if (tmp / top).exists():
                raise LambdaAssetError(f"a Lambda dependency installs a top-level {top!r}")
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
