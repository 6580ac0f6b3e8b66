"""``results --within``: each polygon's ``building_count`` is a whole number of buildings counted
on the job's outlines (stored masks, stitched as ``export`` does), where the tile-weighted
``building_count_estimate`` is a fraction; the same count as ``--compare --within``."""

from __future__ import annotations

import json

import pytest
from test_export_buildings import ALL, JOB, X0, Y0, put_job

from looking_glass.grid import lat_of_row_edge, lon_of_col
from looking_glass.results.polygons import parse_polygons
from looking_glass.results.query import query
from looking_glass.results.within_counts import within_outline_counts


def _box(name: str, c0: float, r0: float, c1: float, r1: float) -> dict:
    """A polygon over mosaic pixels [c0, c1] x [r0, r1] (test_export_buildings.mosaic)."""
    w, e = (lon_of_col(X0 + c / 256, 18) for c in (c0, c1))
    n, s = (lat_of_row_edge(Y0 + r / 256, 18) for r in (r0, r1))
    ring = [[w, s], [e, s], [e, n], [w, n], [w, s]]
    return {"type": "Feature", "properties": {"name": name}, "geometry": {"type": "Polygon", "coordinates": [ring]}}


# The mosaic's five buildings have their centres at pixel (col, row) (50, 40), (260, 260),
# (515, 120), (340, 330) and (650, 425).
POLYGONS = [
    _box("west", 0, 0, 300, 512),  # buildings 1 and 2 (2 is cut by all four of its tiles)
    _box("east", 300, 0, 768, 512),  # buildings 3, 4 and 5
    _box("sliver", 200, 200, 250, 300),  # a part of building 2 only: no building
]


def test_counts_are_whole_buildings_by_their_centre_and_agree_with_compare(aws, tmp_path):
    from looking_glass.results.gap import job_gap

    store, s3, bucket = put_job(aws, ALL)
    polygons = parse_polygons(json.dumps({"type": "FeatureCollection", "features": POLYGONS}).encode())
    counts = within_outline_counts(store, s3, bucket, JOB, polygons)
    assert counts == [2, 3, 0]
    _, rows, tot = query(store, JOB, polygons=polygons, counts=counts)
    assert [r["building_count"] for r in rows] == [2, 3, 0] and tot["building_count"] == 5
    estimates = [r["building_count_estimate"] for r in rows]
    assert estimates[2] > 0 and any(e != int(e) for e in estimates)  # what the weighting gave: fractions
    mapped = tmp_path / "none.geojson"
    mapped.write_text('{"type": "FeatureCollection", "features": []}')
    with pytest.warns(UserWarning, match="no mapped building"):
        gap = job_gap(store, s3, bucket, JOB, str(mapped), polygons=polygons)
    assert {r["name"]: r["predicted_count"] for r in gap.rows} == {"west": 2, "east": 3, "sliver": 0}


def test_a_job_without_masks_has_no_counts(aws):
    store, s3, bucket = put_job(aws, ALL, masks=False)
    polygons = parse_polygons(json.dumps({"type": "FeatureCollection", "features": POLYGONS}).encode())
    assert within_outline_counts(store, s3, bucket, JOB, polygons) is None
    _, rows, tot = query(store, JOB, polygons=polygons, counts=None)
    assert all(r["building_count"] is None for r in rows) and tot["building_count"] is None
    west, east, _ = (r["building_count_estimate"] for r in rows)
    assert west + east == pytest.approx(5, abs=0.02)  # the two split the job's tiles: the tiles' counts
    assert tot["building_count_estimate"] == pytest.approx(west + east + rows[2]["building_count_estimate"])


def test_polygons_far_from_the_job_read_no_mask(aws):
    store, s3, bucket = put_job(aws, ALL)
    far = parse_polygons(json.dumps(_box("far", 5000, 5000, 5100, 5100)).encode())

    class Bar:
        total = None

    bar = Bar()
    assert within_outline_counts(store, s3, bucket, JOB, far, progress=bar) == [0]
    assert bar.total == 0
