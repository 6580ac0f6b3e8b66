"""Start-up of the command line: what ``import looking_glass.cli.main`` and ``cover`` load.

Most of what ``looking-glass cover`` takes on a city is start-up and reading the AOI (issue 14;
``benchmarks/cover_benchmark.py --whole-process``). The heavy libraries are imported inside the
commands that need them; these tests keep it so, in a fresh interpreter each.
"""

import json
import os
import subprocess
import sys

from conftest import REPO_ROOT, SAMPLE_POLYGON

# Libraries no command's start-up needs: each is loaded by the commands that use it.
HEAVY = ("tensorflow", "keras", "rasterio", "rio_tiler", "boto3", "botocore", "moto", "PIL", "matplotlib",
         "scipy", "skimage", "pyproj", "pyogrio", "onnxruntime", "requests")


def _loaded_after(code: str) -> tuple[list[str], list[str]]:
    """After running ``code`` in a fresh interpreter that imports this checkout's package: the
    top-level modules of HEAVY (and shapely) loaded, and every ``looking_glass.cli`` module."""
    probe = (
        f"{code}\nimport json, sys\n"
        f"print(json.dumps([sorted({{m.split('.')[0] for m in sys.modules}} & {set(HEAVY) | {'shapely'}!r}),"
        f" sorted(m for m in sys.modules if m.startswith('looking_glass.cli'))]))"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO_ROOT, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    heavy, cli = json.loads(proc.stdout.strip().splitlines()[-1])
    return heavy, cli


def test_importing_the_command_line_loads_no_heavy_library_and_no_command():
    # Not even shapely: only commands that read an AOI need it (cli.common.read_aoi imports it).
    # Nor the modules of the commands, nor logging and importlib.abc (only TensorFlow's first
    # import needs them, cli.quiet).
    code = "import looking_glass.cli.main\nimport sys\nassert not {'logging', 'importlib.abc'} & set(sys.modules)"
    assert _loaded_after(code) == ([], ["looking_glass.cli", "looking_glass.cli.main", "looking_glass.cli.quiet"])


def test_cover_loads_shapely_and_its_own_command_module_only(tmp_path):
    aoi = tmp_path / "aoi.geojson"
    aoi.write_text(json.dumps(SAMPLE_POLYGON))
    code = (
        "from looking_glass.cli.main import main\n"
        f"assert main(['cover', {str(aoi)!r}, '--format', 'count']) == 0"
    )
    heavy, cli = _loaded_after(code)
    assert heavy == ["shapely"]
    assert cli == ["looking_glass.cli", "looking_glass.cli.common", "looking_glass.cli.main", "looking_glass.cli.quiet", "looking_glass.cli.tiles"]


def test_the_export_parser_offers_exactly_the_export_formats():
    from looking_glass.cli.outlines import EXPORT_FORMAT_NAMES
    from looking_glass.results.buildings import EXPORT_FORMATS

    assert EXPORT_FORMAT_NAMES == tuple(EXPORT_FORMATS)


def test_a_reader_that_stops_early_ends_cover_quietly(tmp_path):
    # `looking-glass cover AOI | head -1`: this AOI at zoom 22 is ~120,000 lines (2.3 MB), far more
    # than a pipe holds, so cover is still writing when the reader goes away. (The small sample
    # AOI is 720 lines, 14 kB: it fits in the pipe, and under load cover could finish first.)
    aoi = tmp_path / "aoi.geojson"
    aoi.write_text(json.dumps({"type": "Polygon", "coordinates": [
        [[30.00, -2.00], [30.03, -2.00], [30.03, -1.97], [30.00, -1.97], [30.00, -2.00]]]}))
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "looking_glass.cli.main", "cover", str(aoi), "--zoom", "22"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO_ROOT, env=env)
    first = proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 141
    assert first.decode().endswith(" 22\n") and err == b""


def test_cover_freezes_the_collector_only_as_the_process_own_command(tmp_path, capsys):
    # Run as a program (argv from sys.argv), cover freezes the collector's view of the objects
    # before the interpreter's shutdown walks them; a caller of main in process (tests, the
    # embedded run) keeps a collector that frees its garbage.
    import gc

    from looking_glass.cli.main import main

    aoi = tmp_path / "aoi.geojson"
    aoi.write_text(json.dumps(SAMPLE_POLYGON))
    before = gc.get_freeze_count()
    assert main(["cover", str(aoi), "--format", "count"]) == 0
    assert gc.get_freeze_count() == before
    count = capsys.readouterr().out.strip()
    code = (
        "import gc, sys\n"
        f"sys.argv = ['looking-glass', 'cover', {str(aoi)!r}, '--format', 'count']\n"
        "from looking_glass.cli.main import main\n"
        "code = main()\n"
        "print(code, gc.get_freeze_count() > 0)"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [count, "0 True"]


def test_version_prints_the_installed_distributions_version():
    from importlib.metadata import version

    proc = subprocess.run([sys.executable, "-m", "looking_glass.cli.main", "--version"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"looking-glass {version('looking-glass')}"
