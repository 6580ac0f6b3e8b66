"""Issue 18's imagery on a live embedded run, as a user drives it: `up` registers two real
GeoTIFFs (written here, dated by their TIFF tags) as one mosaic and a URL template (with a
registered date); one AOI is submitted against each (the mosaic's without an AOI: its
footprint); results carry capture dates and coverage; both jobs are mapped over their own
imagery; resubmitting the same inputs names the job that holds them, and after `models use` the
same inputs make a new job (issue 18's "done when", as one module)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from conftest import SAMPLE_POLYGON, embedded_thread, geojson_bytes, results_by_x, run_cli

from looking_glass.local.tileserver import SyntheticTileServer
from looking_glass.runtime.imagery_sources import parse_sources

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "imagery"))
from test_mosaic import TILE_SIZE, X, Y, write_tif  # noqa: E402

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def imagery_up(tmp_path_factory):
    """`up --imagery city=old.tif,new.tif --imagery synth=TEMPLATE@2024-01-01` in a thread."""
    tmp = tmp_path_factory.mktemp("imagery")
    # old.tif (2020): tiles X and X+1; new.tif (2023): tile X+1 and the west half of X+2.
    old = write_tif(tmp / "old.tif", 90, 0, 2 * TILE_SIZE, date="2020:01:02 10:00:00")
    new = write_tif(tmp / "new.tif", 150, TILE_SIZE, TILE_SIZE + TILE_SIZE // 2, date="2023:06:01 09:30:00")
    synthetic = SyntheticTileServer().start()
    sources = parse_sources({"city": f"{old},{new}", "synth": f"{synthetic.url_template}@2024-01-01"})
    with embedded_thread(tmp, imagery_sources=sources):
        yield tmp
    synthetic.stop()


def test_a_mosaic_and_a_template_each_give_dated_results_with_coverage(imagery_up, capsys):
    code, out, err = run_cli(capsys, "submit", "--imagery", "city", "--wait", "--timeout", "300")
    assert code == 0, err
    city = out.strip()
    assert "'city-footprint' (3 zoom-18 tiles)" in err and "COMPLETE" in err
    tiles = results_by_x(capsys, city)
    assert sorted(tiles) == [X, X + 1, X + 2] and all(int(tiles[x]["y"]) == Y for x in tiles)
    assert all(t["status"] == "done" for t in tiles.values())
    assert tiles[X]["capture_date"] == "2020-01-02"
    assert tiles[X + 1]["capture_date"] == "2023-06-01"  # the newer image covers the whole tile
    assert tiles[X + 2]["capture_date"] == "2023-06-01"
    assert float(tiles[X]["valid_fraction"]) == 1.0
    assert float(tiles[X + 2]["valid_fraction"]) == pytest.approx(0.5, abs=0.01)  # half outside the mosaic
    # the density of the half tile is over the half that has imagery
    edge = tiles[X + 2]
    assert float(edge["done_area_m2"]) == pytest.approx(0.5 * float(tiles[X]["done_area_m2"]), rel=0.02)

    aoi = imagery_up / "kigali.geojson"
    aoi.write_bytes(geojson_bytes(SAMPLE_POLYGON))
    code, out, err = run_cli(capsys, "submit", str(aoi), "--imagery", "synth", "--wait", "--timeout", "300")
    assert code == 0, err
    synth = out.strip()
    done = [t for t in results_by_x(capsys, synth).values() if t["status"] == "done"]
    assert done and {t["capture_date"] for t in done} == {"2024-01-01"}
    assert all(float(t["valid_fraction"]) == 1.0 for t in done)

    code, out, _ = run_cli(capsys, "status", synth, "--json")
    assert '"imagery": "synth"' in out

    # The very same inputs again: the job that holds them, nothing new.
    code, out, err = run_cli(capsys, "submit", str(aoi), "--imagery", "synth")
    assert code == 0 and out.strip() == synth and f"job {synth} already holds the results" in err
    code, out, err = run_cli(capsys, "submit", str(aoi), "--imagery", "nowhere")
    assert code == 2 and "unknown imagery source 'nowhere'" in err


def test_the_map_of_a_job_on_a_named_source_shows_that_source_not_the_runs_default(imagery_up, capsys):
    """The run's default imagery is the synthetic world; the city job's map must show the city
    mosaic (old.tif pixels 90..96 in tile X), by default and with --imagery NAME."""
    import numpy as np
    from PIL import Image

    code, out, err = run_cli(capsys, "submit", "--imagery", "city", "--wait", "--timeout", "300")
    assert code == 0, err
    city = out.strip()
    for extra in ([], ["--imagery", "city"]):
        out_dir = imagery_up / f"map-{len(extra)}"
        code, out, err = run_cli(capsys, "map", city, "--out", str(out_dir), *extra)
        assert code == 0, err
        tile = np.asarray(Image.open(out_dir / "map_tiles" / "18" / str(X) / f"{Y}.webp").convert("L"), float)
        assert abs(tile.mean() - 93) < 6 and tile.std() < 6, (extra, tile.mean(), tile.std())
    # gap.html (map --compare) shows the same imagery as map.html: the tiles written beside them
    mapped = imagery_up / "mapped.geojson"
    mapped.write_text('{"type": "FeatureCollection", "features": []}')
    code, out, err = run_cli(capsys, "map", city, "--out", str(imagery_up / "gap"), "--compare", str(mapped))
    assert code == 0, err
    page = (imagery_up / "gap" / "gap.html").read_text()
    assert '"imagery":{"template":"map_tiles/{z}/{x}/{y}.webp"' in page  # not a .tif the browser cannot read


def test_the_template_job_maps_over_its_imagery_and_a_new_active_model_makes_a_new_job(imagery_up, capsys):
    """Issue 18's "done when", last steps: the URL-template job's map has its imagery underneath,
    and after `models use` the very same AOI and source is a new job (the model is part of a job)."""
    import json
    import shutil

    from looking_glass.model.segmenter import SHIPPED_MODEL

    aoi = imagery_up / "kigali.geojson"
    aoi.write_bytes(geojson_bytes(SAMPLE_POLYGON))
    code, out, err = run_cli(capsys, "submit", str(aoi), "--imagery", "synth", "--wait", "--timeout", "300")
    assert code == 0, err
    before = out.strip()
    code, out, err = run_cli(capsys, "map", before, "--out", str(imagery_up / "synth-map"))
    assert code == 0 and "imagery tiles in" in out, (out, err)
    assert any((imagery_up / "synth-map" / "map_tiles" / "18").rglob("*.webp"))

    model = imagery_up / "next" / "model.keras"
    model.parent.mkdir()
    shutil.copy(SHIPPED_MODEL, model)
    meta = json.loads(SHIPPED_MODEL.with_suffix(".json").read_text())
    meta.pop("onnx", None)
    meta.update({"model_id": "e2e-imagery", "version": "next"})
    model.with_suffix(".json").write_text(json.dumps(meta))
    assert run_cli(capsys, "models", "register", str(model))[0] == 0
    assert run_cli(capsys, "models", "use", "e2e-imagery/next")[0] == 0

    code, out, err = run_cli(capsys, "submit", str(aoi), "--imagery", "synth", "--wait", "--timeout", "300")
    assert code == 0, err
    after = out.strip()
    assert after != before and "already holds the results" not in err
    code, out, _ = run_cli(capsys, "status", after, "--json")
    record = json.loads(out)
    assert record["imagery"] == "synth" and "e2e-imagery" in record["model"]
