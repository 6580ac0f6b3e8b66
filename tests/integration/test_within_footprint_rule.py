"""``results JOB --within POLYGONS`` reads its polygons by the one footprint-reader rule
(datasets/feature_tally.py, through outlines.layers.read_polygons): a Point beside a polygon is
skipped with one warning line and the polygon used (it refused the file); a file of Points only is
one error line, exit 2; projected coordinates with a declared CRS are reprojected (it refused them
with a hint that ignored the crs member), without one they are the shared refusal naming the fix.
Real files against a job in moto, stored as the workers store it."""

from __future__ import annotations

import json

import pytest
from conftest import run_cli
from pyproj import Transformer
from test_results_cli import FULL, X0, Y0, add_job, env  # noqa: F401 -- env: the module's moto fixture

from looking_glass.grid import tile_bounds

# The west half of the 3 x 2 block: tiles dx=0 whole, dx=1 half (as test_results_cli's polygon).
_WEST, _, _, _NORTH = tile_bounds(X0, Y0, 18)
_W1, _SOUTH, _E1, _ = tile_bounds(X0 + 1, Y0 + 1, 18)
RING = [[_WEST, _SOUTH], [(_W1 + _E1) / 2, _SOUTH], [(_W1 + _E1) / 2, _NORTH], [_WEST, _NORTH], [_WEST, _SOUTH]]
WEST = {"type": "Feature", "properties": {"name": "west"}, "geometry": {"type": "Polygon", "coordinates": [RING]}}
POINT = {"type": "Feature", "properties": {"name": "well"}, "geometry": {"type": "Point", "coordinates": RING[0]}}


def _within(capsys, tmp_path, job: str, doc: dict, name: str) -> tuple[int, dict | None, str]:
    """``results JOB --within FILE --format geojson --out``: (exit code, the output document, stderr)."""
    path, out = tmp_path / f"{name}.geojson", tmp_path / f"{name}-out.geojson"
    path.write_text(json.dumps(doc))
    code, _, err = run_cli(capsys, "results", job, "--within", str(path), "--format", "geojson", "--out", str(out),
                           "--no-progress")
    return code, json.loads(out.read_text()) if out.exists() else None, err


def _rows(doc: dict) -> dict:
    return {f["properties"]["name"]: f["properties"] for f in doc["features"]}


def test_a_point_beside_a_polygon_is_skipped_with_one_warning(env, capsys, tmp_path):  # noqa: F811
    job = add_job(env, FULL)
    code, alone, err = _within(capsys, tmp_path, job, {"type": "FeatureCollection", "features": [WEST]}, "alone")
    assert code == 0 and "warning: --within" not in err, err
    code, mixed, err = _within(capsys, tmp_path, job, {"type": "FeatureCollection", "features": [POINT, WEST]}, "mixed")
    assert code == 0, err
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert warnings == [f"warning: --within {tmp_path / 'mixed.geojson'}: 1 feature(s) skipped (1 Point), the rest "
                        "used (1): feature 0: a Point, not a polygon"]
    assert _rows(mixed) == _rows(alone) and set(_rows(mixed)) == {"west"}
    assert _rows(mixed)["west"]["building_area_m2"] == pytest.approx(10.5 + 20 / 2 + 5.25 / 2, abs=0.01)


def test_points_only_is_one_error_line(env, capsys, tmp_path):  # noqa: F811
    job = add_job(env, FULL)
    other = {**POINT, "properties": {"name": "pump"}}
    code, doc, err = _within(capsys, tmp_path, job, {"type": "FeatureCollection", "features": [POINT, other]}, "points")
    assert code == 2 and doc is None
    (line,) = err.strip().splitlines()
    assert line.startswith(f"error: --within {tmp_path / 'points.geojson'}: no usable building polygon in it, "
                           "no polygon to total the results within (2 feature(s), none a valid Polygon or "
                           "MultiPolygon: 2 Points: feature 0: a Point, not a polygon; feature 1: a Point")


def test_projected_coordinates_with_a_declared_crs_are_reprojected(env, capsys, tmp_path):  # noqa: F811
    job = add_job(env, FULL)
    to_metres = Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True)
    metres = [list(to_metres.transform(x, y)) for x, y in RING]
    projected = {**WEST, "geometry": {"type": "Polygon", "coordinates": [metres]}}
    code, alone, _ = _within(capsys, tmp_path, job, {"type": "FeatureCollection", "features": [WEST]}, "lonlat")
    declared = {"type": "FeatureCollection", "crs": {"type": "name", "properties": {"name": "EPSG:3857"}},
                "features": [projected]}
    code, doc, err = _within(capsys, tmp_path, job, declared, "declared")
    assert code == 0, err
    row, expected = _rows(doc)["west"], _rows(alone)["west"]
    assert (row["tiles"], row["tiles_partial"], row["tiles_done"]) == (expected["tiles"], expected["tiles_partial"], 3)
    assert row["building_area_m2"] == pytest.approx(expected["building_area_m2"], abs=1e-6)

    # The same metres without the crs member: read as degrees they cannot be; the shared refusal.
    code, doc, err = _within(capsys, tmp_path, job, {"type": "FeatureCollection", "features": [projected]}, "undeclared")
    assert code == 2 and doc is None
    (line,) = err.strip().splitlines()
    assert line.startswith(f"error: --within {tmp_path / 'undeclared.geojson'}: coordinates such as (")
    assert "are not longitude/latitude degrees, yet the file declares no CRS" in line and "ogr2ogr" in line


def test_a_geopackage_in_web_mercator_with_a_name_field(env, capsys, tmp_path):  # noqa: F811
    """Any file the footprint readers read: a GeoPackage in EPSG:3857, its row named by its
    ``name`` field, the same figures as the lon/lat GeoJSON."""
    import numpy as np
    import pyogrio.raw
    import shapely

    job = add_job(env, FULL)
    _, alone, _ = _within(capsys, tmp_path, job, {"type": "FeatureCollection", "features": [WEST]}, "lonlat")
    to_metres = Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True)
    polygon = shapely.Polygon([to_metres.transform(x, y) for x, y in RING])
    gpkg = tmp_path / "tasks.gpkg"
    pyogrio.raw.write(str(gpkg), np.array([shapely.to_wkb(polygon)], dtype=object), [np.array(["west"], dtype=object)],
                      fields=["name"], driver="GPKG", crs="EPSG:3857", geometry_type="Polygon")
    out = tmp_path / "gpkg-out.geojson"
    code, _, err = run_cli(capsys, "results", job, "--within", str(gpkg), "--format", "geojson", "--out", str(out),
                           "--no-progress")
    assert code == 0, err
    row, expected = _rows(json.loads(out.read_text()))["west"], _rows(alone)["west"]
    assert row["building_area_m2"] == pytest.approx(expected["building_area_m2"], abs=1e-6)
    assert row["tiles"] == expected["tiles"]
