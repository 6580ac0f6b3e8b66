"""The enumerator Lambda's code asset, built without Docker (stacks.assets): our sources plus the
core dependencies installed by pip as binary wheels for the Lambda platform.

The first run needs the package index (pip); later runs reuse the cached install in build/.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from conftest import REPO_ROOT

from stacks import assets
from stacks.assets import (
    LAMBDA_PLATFORMS,
    LAMBDA_PYTHON_VERSION,
    LambdaAssetError,
    install_lambda_dependencies,
    lambda_requirements,
    stage_lambda_asset,
)

REPO = REPO_ROOT
EM_X86_64 = 0x3E


def _wheel_tags(dist_info: Path) -> list[str]:
    return [
        line.split(":", 1)[1].strip()
        for line in (dist_info / "WHEEL").read_text().splitlines()
        if line.startswith("Tag:")
    ]


def _dist_info(staged: Path, name: str) -> Path:
    found = [p for p in staged.glob("*.dist-info") if p.name.lower().startswith(name.replace("-", "_") + "-")]
    assert len(found) == 1, (name, found)
    return found[0]


def _elf_machine(path: Path) -> int:
    header = path.read_bytes()[:20]
    assert header[:4] == b"\x7fELF", f"{path} is not an ELF shared object"
    assert header[4] == 2, f"{path} is not 64-bit"
    return struct.unpack("<H", header[18:20])[0]


@pytest.fixture(scope="module")
def staged() -> Path:
    return stage_lambda_asset()


def test_asset_holds_shapely_compiled_for_cpython_312_manylinux_x86_64(staged):
    py = LAMBDA_PYTHON_VERSION.replace(".", "")
    assert py == "312"
    compiled = staged / "shapely" / f"lib.cpython-{py}-x86_64-linux-gnu.so"
    assert compiled.is_file(), sorted(p.name for p in (staged / "shapely").glob("*.so"))
    assert _elf_machine(compiled) == EM_X86_64
    for dist in ("shapely", "numpy"):
        tags = _wheel_tags(_dist_info(staged, dist))
        assert tags and all(t.startswith(f"cp{py}-cp{py}-manylinux") and t.endswith("_x86_64") for t in tags), tags
    # Every compiled module of the asset is for that interpreter (none for the build machine's).
    for so in staged.rglob("*.cpython-*.so"):
        assert f"cpython-{py}-x86_64-linux-gnu" in so.name, so


def test_asset_holds_the_core_dependencies_but_no_tensorflow_and_no_boto3(staged):
    files = {p.relative_to(staged).as_posix() for p in staged.rglob("*") if p.is_file()}
    assert "lambdas/tile_enumerator/handler.py" in files
    assert "looking_glass/pipeline/enumerator.py" in files and "looking_glass/runtime/resources.py" in files
    for requirement in lambda_requirements():
        name = assets._requirement_name(requirement)
        _dist_info(staged, name)  # installed
    tops = {p.split("/")[0].lower() for p in files}
    for banned in ("tensorflow", "keras", "tf_keras", "tensorboard", "jax", "torch"):
        assert not any(t == banned or t.startswith(banned + "-") for t in tops), banned
    # boto3 comes with the Lambda runtime (documented in stacks.assets and the README).
    assert not {"boto3", "botocore", "s3transfer"} & tops
    assert "bin" not in tops  # console scripts dropped
    assert not any("__pycache__" in p or p.endswith(".pyc") for p in files)
    assert not any(p.startswith("looking_glass/model/shipped/") or p.endswith(".keras") for p in files)
    for rel in files:
        if rel.startswith(("looking_glass/", "lambdas/")) and rel.endswith(".py"):
            text = (staged / rel).read_text()
            assert "import tensorflow" not in text and "import keras" not in text, rel
    size_mb = sum((staged / f).stat().st_size for f in files) / 2**20
    assert size_mb < 200, f"{size_mb:.0f} MB: the Lambda limit is 250 MB unzipped"


def test_requirements_come_from_pyproject_less_what_the_runtime_provides():
    import tomllib

    core = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    requirements = lambda_requirements()
    assert requirements == [r for r in core if not r.startswith("boto3")]
    assert {assets._requirement_name(r) for r in requirements} >= {
        "shapely", "mercantile", "numpy", "aws-lambda-powertools",
    }


def test_unchanged_sources_and_requirements_reuse_the_cache_without_pip(staged, monkeypatch):
    def no_pip(*args, **kwargs):
        raise AssertionError("pip ran although nothing changed")

    monkeypatch.setattr(assets.subprocess, "run", no_pip)
    assert stage_lambda_asset() == staged


def test_a_source_change_restages_a_new_directory(tmp_path, staged):
    deps = install_lambda_dependencies()
    root = tmp_path / "src"
    for top in assets.LAMBDA_SOURCES:
        (root / top).mkdir(parents=True)
        (root / top / "__init__.py").write_text("")
    first = stage_lambda_asset(root, tmp_path / "out", deps=deps)
    assert stage_lambda_asset(root, tmp_path / "out", deps=deps) == first
    (root / "lambdas" / "__init__.py").write_text("# changed\n")
    second = stage_lambda_asset(root, tmp_path / "out", deps=deps)
    assert second != first and (second / "lambdas" / "__init__.py").read_text() == "# changed\n"
    # Dependencies are hard links into the cache where the file system allows it: same bytes.
    so = next((second / "shapely").glob("lib.*.so"))
    assert so.read_bytes() == (deps / "shapely" / so.name).read_bytes()


def test_a_failing_pip_fails_with_the_reason_and_leaves_nothing_behind(tmp_path, monkeypatch):
    monkeypatch.setattr(assets.sys, "executable", "/bin/false")
    with pytest.raises(LambdaAssetError, match="pip could not install the Lambda dependencies"):
        install_lambda_dependencies(["numpy>=1.26,<3"], deps_root=tmp_path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(
    sysconfig.get_platform() != "linux-x86_64", reason="imports manylinux x86_64 wheels"
)
def test_the_handler_imports_from_an_asset_built_for_this_interpreter(tmp_path):
    """Same recipe for the interpreter running the tests (CPython 3.11 here): with only the
    standard library, the asset and the packages the Lambda runtime provides (boto3 and its
    dependencies) on the path, the handler imports and covers the sample AOI."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    deps = install_lambda_dependencies(python_version=version, platforms=LAMBDA_PLATFORMS)
    staged = stage_lambda_asset(REPO, tmp_path / "assets", deps=deps)
    runtime = tmp_path / "runtime"  # what the Lambda Python runtime adds: boto3 and its deps
    runtime.mkdir()
    import boto3

    site = Path(boto3.__file__).parent.parent
    for name in ("boto3", "botocore", "s3transfer", "dateutil", "urllib3", "six.py", "jmespath"):
        os.symlink(site / name, runtime / name)
    code = f"""
import sys
sys.path[:0] = [{str(staged)!r}, {str(runtime)!r}]
import lambdas.tile_enumerator.handler as handler
import numpy, shapely
from looking_glass.tiling.aoi import parse_aoi
from looking_glass.tiling.cover import count_tiles, tile_runs
aoi = parse_aoi(open({str(REPO / 'looking_glass' / 'data' / 'sample_aoi.geojson')!r}, 'rb').read())
for module in (shapely, numpy, handler):
    assert module.__file__.startswith({str(staged)!r}), module.__file__
assert not {{'tensorflow', 'keras'}} & set(sys.modules)
print(count_tiles(tile_runs(aoi.geometry)))
"""
    out = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, timeout=300,
        env={"PATH": os.environ.get("PATH", ""), "AWS_DEFAULT_REGION": "us-east-1"},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert int(out.stdout.strip()) == 314  # the README's tile count of the sample AOI
