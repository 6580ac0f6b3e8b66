"""S3 mosaics on the embedded run, as deployed workers read them: `up` registers a list of two
``s3://`` GeoTIFFs and a STAC item collection on S3 whose items are relative to it (the test's own
moto server plays the user's AWS); the run copies every object they read into its own S3 under
the same bucket and key, so a job on each is read in place (GDAL /vsis3/) with the mosaic's
overlap rule and dates, its footprint comes from there, and its map draws that imagery."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from conftest import embedded_thread, results_by_x, run_cli

from looking_glass.runtime.imagery_sources import parse_sources

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "imagery"))
from test_mosaic import TILE_SIZE, X, stac_item, write_tif  # noqa: E402

pytestmark = pytest.mark.e2e
BUCKET = "lg-e2e-s3-mosaic"


@pytest.fixture(scope="module")
def s3_mosaic_up(tmp_path_factory, moto_endpoint):
    """The images on the test's S3, then `up --imagery city=s3://.../old.tif,s3://.../new.tif
    --imagery stac=s3://.../items.json` in a thread."""
    import boto3

    tmp = tmp_path_factory.mktemp("s3mosaic")
    old = write_tif(tmp / "old.tif", 90, 0, 2 * TILE_SIZE, date="2020:01:02 10:00:00")
    new = write_tif(tmp / "new.tif", 150, TILE_SIZE, TILE_SIZE + TILE_SIZE // 2, date="2023:06:01 09:30:00")
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    for path in (old, new):
        s3.upload_file(str(path), BUCKET, f"scenes/{path.name}")
    # STAC dates win over the TIFF tags: here old.tif is the newer item
    items = {"type": "FeatureCollection", "features": [stac_item("n", "new.tif", "2021-01-01T00:00:00Z"),
                                                        stac_item("o", "old.tif", "2024-02-03T12:00:00Z")]}
    s3.put_object(Bucket=BUCKET, Key="scenes/items.json", Body=json.dumps(items).encode())
    sources = parse_sources({"city": f"s3://{BUCKET}/scenes/old.tif,s3://{BUCKET}/scenes/new.tif",
                             "stac": f"s3://{BUCKET}/scenes/items.json"})
    with embedded_thread(tmp, imagery_sources=sources):
        yield tmp


def test_a_list_of_s3_geotiffs_is_one_source_read_in_place(s3_mosaic_up, capsys):
    code, out, err = run_cli(capsys, "submit", "--imagery", "city", "--wait", "--timeout", "300")
    assert code == 0, err
    assert "'city-footprint' (3 zoom-18 tiles)" in err and "COMPLETE" in err  # the footprint read from S3
    tiles = results_by_x(capsys, out.strip())
    assert sorted(tiles) == [X, X + 1, X + 2] and all(t["status"] == "done" for t in tiles.values())
    assert [tiles[x]["capture_date"] for x in (X, X + 1, X + 2)] == ["2020-01-02", "2023-06-01", "2023-06-01"]
    assert float(tiles[X + 2]["valid_fraction"]) == pytest.approx(0.5, abs=0.01)

    code, out_map, err = run_cli(capsys, "map", out.strip(), "--out", str(s3_mosaic_up / "city-map"))
    assert code == 0, err
    assert "imagery tiles in" in out_map and (s3_mosaic_up / "city-map" / "map_tiles" / "18").is_dir()


def test_a_stac_document_on_s3_reads_its_items_in_place(s3_mosaic_up, capsys):
    code, out, err = run_cli(capsys, "submit", "--imagery", "stac", "--wait", "--timeout", "300")
    assert code == 0, err
    tiles = results_by_x(capsys, out.strip())
    assert all(t["status"] == "done" for t in tiles.values())
    assert tiles[X]["capture_date"] == "2024-02-03"  # old.tif, the newer STAC item, wins
    assert tiles[X + 2]["capture_date"] == "2021-01-01"  # only new.tif reaches X + 2
