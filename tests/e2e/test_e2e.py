"""End to end on the embedded stack: real moto server, real handler, real worker processes, real
HTTP tiles, real model. Every tile of the cover gets exactly one result; totals add up."""

import contextlib
import io
import json

import pytest
from conftest import SAMPLE_POLYGON, geojson_bytes

from looking_glass.grid import quadkey
from looking_glass.local.demo import run_demo
from looking_glass.tiling.aoi import parse_aoi
from looking_glass.tiling.cover import iter_tiles, tile_runs

pytestmark = pytest.mark.e2e
STDERR: dict[str, str] = {}  # what the module's demo run printed on stderr


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    data = geojson_bytes(SAMPLE_POLYGON)
    said = io.StringIO()
    with contextlib.redirect_stderr(said):
        summary = run_demo(out, data, "tiny.geojson", workers=2, timeout_s=240, progress=False)
    STDERR["demo"] = said.getvalue()
    return out, summary, data


def test_the_steps_after_the_job_are_announced_not_silent(demo_run):
    """After the bar ends the demo draws the map and renders the truth again (a minute for the
    314 demo tiles): each step says so on stderr."""
    out, summary, _ = demo_run
    said = STDERR["demo"]
    assert f"measuring the synthetic world's true building area on {summary['tiles_done']:,} done tiles" in said
    assert f"drawing {out / 'map.png'}" in said


def test_every_tile_of_the_cover_has_exactly_one_result(demo_run):
    out, summary, data = demo_run
    cover = {quadkey(x, y, z) for x, y, z in iter_tiles(tile_runs(parse_aoi(data).geometry))}
    features = json.loads((out / "results.geojson").read_text())["features"]
    keys = [f["properties"]["quadkey"] for f in features]
    assert len(keys) == len(set(keys)) == len(cover)
    assert set(keys) == cover
    assert summary["status"] == "COMPLETE"
    assert summary["tiles_total"] == summary["result_items"] == len(cover)


def test_job_totals_equal_the_sum_of_its_items(demo_run):
    out, summary, _ = demo_run
    features = json.loads((out / "results.geojson").read_text())["features"]
    area = sum(f["properties"]["building_area_m2"] for f in features)
    assert summary["building_area_m2"] == pytest.approx(area, abs=1e-6)
    done = sum(f["properties"]["status"] == "done" for f in features)
    assert summary["tiles_done"] == done
    assert summary["tiles_done"] + summary["tiles_failed"] + summary["tiles_no_imagery"] + summary["tiles_skipped"] == len(features)


def test_demo_writes_its_three_outputs(demo_run):
    out, summary, _ = demo_run
    saved = json.loads((out / "summary.json").read_text())
    for key in ("job_id", "tiles_total", "tiles_done", "tiles_failed", "building_area_m2", "truth_area_m2", "elapsed_s", "model"):
        assert key in saved
    assert saved["truth_area_m2"] > 0
    assert (out / "map.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    feature = json.loads((out / "results.geojson").read_text())["features"][0]
    assert feature["geometry"]["type"] == "Polygon"
    assert set(feature["properties"]) >= {"quadkey", "z", "x", "y", "status", "building_area_m2"}
