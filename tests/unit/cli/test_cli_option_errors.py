"""Bad command lines end as ONE ``error: ...`` line (exit status 2, a pointer to ``--help``), for
every command: argparse's own errors (a value out of an option's range, a missing argument, an
unknown command) included, and every numeric option of the commands has a range."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from conftest import run_cli

from looking_glass.cli.common import map_imagery
from looking_glass.local.inputs import InputError


@pytest.mark.parametrize("argv, message", [
    (["demo", "--timeout", "-5"], "argument --timeout: -5.0 must be greater than 0"),
    (["demo", "--timeout", "0"], "argument --timeout: 0.0 must be greater than 0"),
    (["demo", "--workers", "-1"], "argument --workers: -1 must be at least 1"),
    (["up", "--workers", "0"], "argument --workers: 0 must be at least 1"),
    (["submit", "a.geojson", "--timeout", "-1"], "argument --timeout: -1.0 must be greater than 0"),
    (["jobs", "--limit", "0"], "argument --limit: 0 must be at least 1"),
    (["prepare", "--footprints", "f", "--out", "o", "--chip-size", "-5"], "argument --chip-size: -5 must be at least 1"),
    (["prepare", "--footprints", "f", "--out", "o", "--val-fraction", "2"], "argument --val-fraction: 2.0 is outside 0..1"),
    (["prepare", "--footprints", "f", "--out", "o", "--max-nodata", "-0.1"], "argument --max-nodata: -0.1 is outside 0..1"),
    (["prepare", "--footprints", "f", "--out", "o", "--seed", "-3"], "argument --seed: -3 must be at least 0"),
    (["synth-data", "--tiles", "4", "--out", "o", "--seed", "x"], "argument --seed: 'x' is not an integer"),
    (["map", "JOB", "--out", "o", "--zoom", "-4"], "argument --zoom: zoom -4 is outside 0..18"),
    (["results", "JOB", "--zoom", "19"], "argument --zoom: zoom 19 is outside 0..18"),
    (["results", "JOB", "--zoom", "-1"], "argument --zoom: zoom -1 is outside 0..18"),
    (["cover", "a.geojson", "--zoom", "25"], "argument --zoom: zoom 25 is outside 0..24"),
    (["estimate", "a.geojson", "--tiles-per-second", "0"], "argument --tiles-per-second: 0.0 must be greater than 0"),
    (["evaluate", "--synthetic", "2", "--seed", "-1"], "argument --seed: -1 must be at least 0"),
    (["plot", "--synthetic", "2", "--out", "p.png", "--count", "0"], "argument --count: 0 must be at least 1"),
    (["train", "--local", "--poll-seconds", "-1"], "argument --poll-seconds: -1.0 must be greater than 0"),
    (["serve-tiles", "x.tif", "--port", "70000"], "argument --port: port 70000 is outside 0..65535"),
    (["serve-synthetic", "--latency-ms", "-1"], "argument --latency-ms: -1.0 must be at least 0"),
    (["models", "use"], "the following arguments are required: version"),
    (["frobnicate"], "argument command: invalid choice: 'frobnicate'"),
])
def test_a_bad_command_line_is_one_error_line(capsys, argv, message):
    code, out, err = run_cli(capsys, *argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith(f"error: {message}"), err
    assert err.rstrip().endswith("--help)") and "usage:" not in err


@pytest.mark.parametrize("source, message", [
    ("https://h/{zoom}/{x}/{y}.png", "unknown placeholder {zoom}"),
    ("https://h/{z}/{x}.png", "lacks {y}"),
])
def test_map_imagery_is_checked_as_demo_up_and_prepare_check_it(tmp_path, capsys, source, message):
    """``map --imagery`` goes through the validator of demo/up/prepare: the same wording, before
    the job is read (the deployment and store are not touched)."""
    dep = SimpleNamespace(imagery=None, data_session=lambda: None)
    with pytest.raises(InputError, match=message.replace("{", r"\{").replace("}", r"\}")) as err:
        map_imagery(dep, None, "job", source)
    assert err.value.exit_code == 2
    code, _, err_text = run_cli(capsys, "demo", "--imagery", source, "--out", str(tmp_path / "o"))
    assert code == 2 and message in err_text  # the same message from demo


def test_map_imagery_missing_geotiff_says_so(tmp_path):
    dep = SimpleNamespace(imagery=None, data_session=lambda: None)
    with pytest.raises(InputError, match="missing.tif"):
        map_imagery(dep, None, "job", str(tmp_path / "missing.tif"))


def test_an_empty_feature_collection_says_it_has_no_features(tmp_path, capsys):
    empty = tmp_path / "empty.geojson"
    empty.write_text(json.dumps({"type": "FeatureCollection", "features": []}))
    code, _, err = run_cli(capsys, "cover", str(empty))
    assert code == 2 and "AOI has no features" in err and "polygonal" not in err


FOOTPRINTS = "tests/data/spacenet_atlanta_sample/buildings.geojson"


@pytest.mark.parametrize("argv", [
    ["demo", "--imagery", FOOTPRINTS],
    ["up", "--imagery", FOOTPRINTS],
    ["up", "--imagery", f"atl={FOOTPRINTS}"],
    ["prepare", "--imagery", FOOTPRINTS, "--aoi", "AOI", "--footprints", FOOTPRINTS, "--out", "OUT"],
    ["validate", "AOI", "--imagery", FOOTPRINTS],
    ["serve-tiles", FOOTPRINTS],
    ["aoi", FOOTPRINTS],
])
def test_footprints_given_as_imagery_are_one_line_saying_so(tmp_path, capsys, argv):
    """Every command that opens imagery: footprints given by mistake (43 polygons, no STAC) are
    named as such, with what the option takes; nothing is started (exit 2 before any server)."""
    aoi = tmp_path / "aoi.geojson"
    aoi.write_text(json.dumps({"type": "Polygon", "coordinates": [
        [[-84.3888, 33.7488], [-84.3868, 33.7488], [-84.3868, 33.7508], [-84.3888, 33.7508], [-84.3888, 33.7488]]]}))
    argv = [str(aoi) if a == "AOI" else str(tmp_path / "out") if a == "OUT" else a for a in argv]
    code, out, err = run_cli(capsys, *argv)
    assert code == 2 and err.count("\n") == 1, err
    assert "buildings.geojson: a GeoJSON of 43 polygon features, not imagery: give a GeoTIFF/COG" in err
    assert "footprints go to demo --truth" in err and "has no assets" not in err
