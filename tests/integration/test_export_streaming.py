"""A country-sized job, in small: the export and the mapping gap of a job many bands tall (moto S3 +
DynamoDB) read it band by band, hold about one band at a time (counted, not timed) and give what
one pass over the whole job gives."""

from __future__ import annotations

import json

import numpy as np
import pytest
import shapely
from test_export_buildings import JOB, X0, Y0, S, put_job

from looking_glass.grid import tile_bounds
from looking_glass.outlines.errors import OutlinesError
from looking_glass.outlines.exports import write_geojson, write_vector
from looking_glass.outlines.gap import gap_rollup, gap_within, mapping_gap, unmapped_buildings
from looking_glass.outlines.layers import read_polygons
from looking_glass.outlines.stitch import outline_tiles
from looking_glass.results.bands import job_bands
from looking_glass.results.buildings import export_buildings
from looking_glass.results.gap import job_gap
from looking_glass.results.gapmap import write_gap_map
from looking_glass.results.masks import MaskError
from looking_glass.results.query import ResultsError

COLS, ROWS = 2, 48
BAND_ZOOM = 16  # bands of 4 tile rows: Y0 % 4 == 2, so 2 + 11 x 4 + 2 rows, 13 bands
BAND_TILES = 4 * COLS


def tall_mosaic() -> np.ndarray:
    """COLS x ROWS tiles: per row a building across the vertical tile edge and one inside a tile,
    every third row one across the edge to the next row, and one building three rows tall
    across a band edge (rows 5 to 7; Y0 + 6 starts a band)."""
    m = np.zeros((ROWS * S, COLS * S), bool)
    for r in range(ROWS):
        top = r * S
        m[top + 20:top + 70, 230:290] = True
        m[top + 120:top + 160, 400:440] = True
        if r % 3 == 1 and r < ROWS - 1:
            m[top + 220:top + 290, 40:100] = True
    m[5 * S + 100:7 * S + 60, 150:200] = True
    return m


@pytest.fixture
def tall_job(aws):
    tiles = {(dx, dy): "done" for dx in range(COLS) for dy in range(ROWS)}
    return put_job(aws, tiles, mosaic_of=tall_mosaic())


class CountingStore:
    """The results store, counting the tile items its queries have handed out."""

    def __init__(self, store):
        self.store, self.returned, self.max_y = store, 0, -1

    def __getattr__(self, name):
        return getattr(self.store, name)

    def query_tiles(self, job_id, *args, **kwargs):
        for item in self.store.query_tiles(job_id, *args, **kwargs):
            self.returned += 1
            if "y" in item:
                self.max_y = max(self.max_y, int(item["y"]))
            yield item


def whole_job_buildings():
    """The buildings of one pass over the whole mosaic, row-major: what the export must equal."""
    m = tall_mosaic()
    return list(outline_tiles(((18, X0 + dx, Y0 + dy), m[dy * S:(dy + 1) * S, dx * S:(dx + 1) * S])
                              for dy in range(ROWS) for dx in range(COLS)))


def test_bands_come_in_row_major_order_and_none_is_read_before_it_is_due(tall_job):
    store, _, _ = tall_job
    spy = CountingStore(store)
    seen = []
    for band in job_bands(spy, JOB, band_zoom=BAND_ZOOM):
        assert len(band.items) <= BAND_TILES and band.y1 - band.y0 == 4
        assert all(band.y0 <= int(i["y"]) < band.y1 for i in band.items)
        assert spy.max_y < band.y1  # no item of a later band has been read yet
        assert spy.returned - len(seen) == len(band.items)  # what is held: this band only
        seen.extend(band.items)
    assert len(seen) == COLS * ROWS and seen == sorted(seen, key=lambda i: (int(i["y"]), int(i["x"])))
    assert [int(i["x"]) for i in seen[:4]] == [X0, X0 + 1, X0, X0 + 1]
    assert len({int(i["y"]) // 4 for i in seen}) == 13
    with pytest.raises(ResultsError, match="band zoom 0"):
        list(job_bands(store, JOB, band_zoom=0))


def test_a_job_in_two_far_apart_places_skips_the_empty_quadtree_between_them(aws):
    # Two single tiles 2**12 tiles apart: a query per empty zoom-14 parent between them would be
    # thousands; the descent asks about the few quadtree nodes above the two tiles only.
    store, _, _ = put_job(aws, {(0, 0): "failed", (0, 4096): "failed"})
    spy = CountingStore(store)
    calls = []
    spy.has_tiles = lambda job_id, prefix: calls.append(prefix) or store.has_tiles(job_id, prefix)
    bands = list(job_bands(spy, JOB))
    assert [len(b.items) for b in bands] == [1, 1] and len(calls) < 100


def test_a_tall_export_is_the_one_pass_export_and_holds_about_a_band(tall_job, tmp_path):
    store, s3, bucket = tall_job
    spy = CountingStore(store)

    class Progress:  # counts the tiles outlined; the items read but not outlined yet are held
        total, n, most_held = 0, 0, 0

        def update(self, k):
            self.n += k
            self.most_held = max(self.most_held, spy.returned - self.n)

    bar = Progress()
    report = export_buildings(spy, s3, bucket, JOB, str(tmp_path / "b.geojson"), "geojson", progress=bar,
                              band_zoom=BAND_ZOOM)
    expected = whole_job_buildings()
    write_geojson(expected, tmp_path / "one_pass.geojson")
    streamed = json.loads((tmp_path / "b.geojson").read_text())["features"]
    one_pass = json.loads((tmp_path / "one_pass.geojson").read_text())["features"]
    base = set(one_pass[0]["properties"])  # the export adds its provenance after the building's own
    assert [(f["geometry"], {k: f["properties"][k] for k in base}) for f in streamed] == \
        [(f["geometry"], f["properties"]) for f in one_pass]
    assert report.buildings == len(expected) == report.building_count and bar.total == COLS * ROWS
    # Held at once: the band being read plus the mask reader's look-ahead (32 tiles), never the
    # job's 96 tiles.
    assert bar.n == COLS * ROWS and bar.most_held <= 2 * BAND_TILES + 32 < COLS * ROWS
    ids = [f["properties"]["id"] for f in json.loads((tmp_path / "b.geojson").read_text())["features"]]
    tall = [f for f in json.loads((tmp_path / "b.geojson").read_text())["features"] if f["properties"]["tiles"] == 3]
    assert ids == list(range(1, len(ids) + 1)) and len(tall) == 1  # the three-row building is one polygon


@pytest.mark.parametrize("suffix", [".gpkg", ".geojson"])
def test_the_streamed_gap_is_the_gap_of_the_whole_job_at_once(tall_job, tmp_path, suffix):
    store, s3, bucket = tall_job
    predicted = whole_job_buildings()
    mapped = [b.polygon for b in predicted[::2]]
    path = tmp_path / f"mapped{suffix}"
    (write_vector if suffix == ".gpkg" else write_geojson)(mapped, path)
    mapped = read_polygons(path).lonlat()  # as stored (GeoJSON rounds to 1e-7 degree)
    tiles = [(18, X0 + dx, Y0 + dy) for dy in range(ROWS) for dx in range(COLS)]

    gap = job_gap(store, s3, bucket, JOB, str(path), band_zoom=BAND_ZOOM, unmapped_out=tmp_path / "un.geojson",
                  keep_unmapped=3)
    whole = {r["quadkey"]: r for r in mapping_gap(predicted, mapped, tiles=tiles)}
    assert len(gap.rows) == len(whole) == COLS * ROWS
    for row in gap.rows:
        expect = whole[row["quadkey"]]
        for k in ("predicted_count", "mapped_count", "rank"):
            assert row[k] == expect[k], (row["quadkey"], k)
        for k in ("predicted_area_m2", "mapped_area_m2", "unmapped_area_m2"):
            assert row[k] == pytest.approx(expect[k], rel=1e-9, abs=1e-6), (row["quadkey"], k)
    assert gap.summary["predicted_count"] == len(predicted) and gap.summary["mapped_count"] == len(mapped)
    unmapped = unmapped_buildings(predicted, mapped)
    assert gap.unmapped_count == len(unmapped) > 3 and [b.id for b in gap.unmapped] == [b.id for b in unmapped[:3]]
    doc = json.loads((tmp_path / "un.geojson").read_text())
    assert sorted(f["id"] for f in doc["features"]) == [b.id for b in unmapped]

    held = gap.held  # compared a band at a time: tiles, buildings and mapped buildings of about one band
    assert held["most_tiles"] <= 2 * BAND_TILES and held["reference_reads"] >= 10
    assert held["most_buildings"] <= len(predicted) // 4 and held["most_mapped"] <= len(mapped) // 4

    w, _, e, n = tile_bounds(X0, Y0 + 4, 18)
    _, s, _, _ = tile_bounds(X0, Y0 + 9, 18)  # rows 4 to 9: across two band edges
    tasks = [{"name": "a", "geometry": shapely.box(w, s, (w + e) / 2, n)},
             {"name": "b", "geometry": shapely.box(*tile_bounds(X0 + 1, Y0 + 40, 18))}]
    within = {r["name"]: r for r in job_gap(store, s3, bucket, JOB, str(path), polygons=tasks,
                                            band_zoom=BAND_ZOOM).rows}
    for r in gap_within(predicted, mapped, tasks):
        for k in ("predicted_count", "mapped_count", "rank"):
            assert within[r["name"]][k] == r[k]
        for k in ("predicted_area_m2", "mapped_area_m2", "unmapped_area_m2"):
            assert within[r["name"]][k] == pytest.approx(r[k], rel=1e-9, abs=1e-6)
    rolled = job_gap(store, s3, bucket, JOB, str(path), zoom=15, band_zoom=BAND_ZOOM).rows
    expect = gap_rollup(list(whole.values()), 15)
    assert [(r["quadkey"], r["predicted_count"], r["mapped_count"]) for r in rolled] == \
        [(r["quadkey"], r["predicted_count"], r["mapped_count"]) for r in expect]


def test_a_gap_that_kept_part_of_its_buildings_asks_for_the_file_and_a_bad_reference_is_refused(tall_job, tmp_path):
    store, s3, bucket = tall_job
    empty = tmp_path / "empty.geojson"
    write_geojson([], empty)
    gap = job_gap(store, s3, bucket, JOB, str(empty), band_zoom=BAND_ZOOM, keep_unmapped=1)
    with pytest.raises(ValueError, match="kept 1 of"):
        write_gap_map(gap, tmp_path / "map", None, "gap")
    bad = tmp_path / "mapped.gpkg"
    bad.write_text("not a geopackage")
    with pytest.raises(OutlinesError, match="mapped.gpkg: cannot read it"):
        job_gap(store, s3, bucket, JOB, str(bad))


def test_a_gap_stopped_by_a_missing_mask_leaves_no_partial_file(aws, tmp_path):
    store, s3, bucket = put_job(aws, {(0, 0): "done", (1, 0): "done"}, masks=False)
    empty = tmp_path / "empty.geojson"
    write_geojson([], empty)
    with pytest.raises(MaskError, match="has no stored mask"):
        job_gap(store, s3, bucket, JOB, str(empty), unmapped_out=tmp_path / "un.geojson")
    assert not (tmp_path / "un.geojson").exists()
