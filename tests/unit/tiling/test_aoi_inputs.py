"""AOIs as users send them (issue 16): empty coordinates, odd JSON, work bounded before it is done,
`validate` saying what the enumerator says, `estimate` right at every zoom. Inputs:
tests/data/cases/aoi-*."""

import json
import math
import time
import tracemalloc

import pytest
import shapely
from conftest import TESTS_DIR, run_cli

from looking_glass.grid import EARTH_RADIUS_M, MAX_LATITUDE
from looking_glass.tiling import aoi as aoi_module
from looking_glass.tiling.aoi import AoiError, parse_aoi
from looking_glass.tiling.cover import count_tiles, tile_runs
from looking_glass.tiling.estimate import tiles_area_km2
from looking_glass.tiling.plan import (
    MAX_EDGE_ROWS,
    TileCapError,
    cover_within_limits,
    edge_rows,
    tile_count_lower_bound,
)

CASES = TESTS_DIR / "data" / "cases"


@pytest.mark.parametrize("path", sorted((CASES / "aoi-empty-coordinates").glob("*.geojson")), ids=lambda p: p.name)
def test_empty_coordinates_read_as_null_geometry_with_a_warning(path):
    aoi = parse_aoi(path.read_bytes())
    assert count_tiles(tile_runs(aoi.geometry, 18)) == 6
    assert len(aoi.warnings) == 1 and "$.features[0] ('broken')" in aoi.warnings[0]


@pytest.mark.parametrize("coords", [[], [[]], [[[]]], [[], []]])
def test_every_empty_multipolygon_form_is_ignored(coords):
    doc = {"type": "GeometryCollection", "geometries": [
        {"type": "MultiPolygon", "coordinates": coords},
        {"type": "Polygon", "coordinates": [[[30, -2], [30.01, -2], [30.01, -1.99], [30, -2]]]},
    ]}
    aoi = parse_aoi(json.dumps(doc).encode())
    assert "empty MultiPolygon" in aoi.warnings[0]


@pytest.mark.parametrize(
    "data, reason",
    [
        ((CASES / "aoi-odd-json" / "int400.geojson").read_bytes(), "too large"),
        ((CASES / "aoi-odd-json" / "type_is_list.geojson").read_bytes(), "type must be a string"),
        (b'{"type": "Polygon", "coordinates": [[[1' + b"0" * 5000 + b", 0]]]}", "not usable JSON"),
        (b"[" * 200_000 + b"]" * 200_000, "nested too deeply"),
        (json.dumps({"type": "Feature", "geometry": {"type": ["x"]}}).encode(), "type must be a string"),
        (json.dumps({"type": "Polygon", "coordinates": "abc"}).encode(), "must be a non-empty list"),
        (json.dumps({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, {"a": 1}], [0, 0]]]}).encode(), "non-numeric"),
        (json.dumps({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1e308 * 10], [0, 0]]]}).encode(), "non-finite"),
        (b'{"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, NaN], [0, 0]]]}', "non-finite"),
        (json.dumps(nested := {"type": "GeometryCollection", "geometries": []}).encode(), "no features"),
    ],
)
def test_malformed_json_of_every_kind_is_an_aoi_error(data, reason):
    with pytest.raises(AoiError, match=reason):
        parse_aoi(data)


def test_deeply_nested_geometry_collections_are_refused():
    doc = {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]}
    for _ in range(60):
        doc = {"type": "GeometryCollection", "geometries": [doc]}
    with pytest.raises(AoiError, match="nested more than"):
        parse_aoi(json.dumps(doc).encode())


def test_vertex_and_part_caps_are_checked_before_any_geometry_is_built(monkeypatch):
    monkeypatch.setattr(aoi_module, "MAX_AOI_PARTS", 100)
    squares = [[[[x, 0], [x + 0.001, 0], [x + 0.001, 0.001], [x, 0]]] for x in range(200)]
    built = []
    monkeypatch.setattr(aoi_module, "Polygon", lambda *a: built.append(1))
    with pytest.raises(AoiError, match="more than 100 polygons"):
        parse_aoi(json.dumps({"type": "MultiPolygon", "coordinates": squares}).encode())
    assert not built
    monkeypatch.setattr(aoi_module, "MAX_AOI_VERTICES", 1000)
    ring = [[math.cos(t / 300) / 10, math.sin(t / 300) / 10] for t in range(2000)] + [[0.1, 0.0]]
    with pytest.raises(AoiError, match="more than 1,000 vertices"):
        parse_aoi(json.dumps({"type": "Polygon", "coordinates": [ring]}).encode())
    assert not built


def test_warnings_and_names_are_capped():
    features = [{"type": "Feature", "geometry": None} for _ in range(500)]
    features.append({"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]}})
    aoi = parse_aoi(json.dumps({"type": "FeatureCollection", "name": "n" * 10_000, "features": features}).encode())
    assert len(aoi.name) == 200 and len(aoi.warnings) == 21 and "480 more" in aoi.warnings[-1]


# ---- work bounded before it is done -----------------------------------------------------------
@pytest.mark.parametrize("path", sorted((CASES / "aoi-comb").glob("*.geojson")), ids=lambda p: p.name)
def test_combs_are_refused_by_tile_count_before_the_cover_runs(path, monkeypatch):
    import looking_glass.tiling.plan as plan

    monkeypatch.setattr(plan, "tile_runs", lambda *a: pytest.fail("the cover ran"))
    geometry = parse_aoi(path.read_bytes()).geometry
    tracemalloc.start()
    t0 = time.monotonic()
    with pytest.raises(TileCapError, match=r"covers at least [\d,]+ tiles, above the cap of 5,000,000"):
        cover_within_limits(geometry, 18, 5_000_000)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert time.monotonic() - t0 < 2 and peak < 20 * 2**20


def test_a_thin_comb_is_refused_for_its_work_even_under_the_tile_cap(monkeypatch):
    import looking_glass.tiling.plan as plan

    coords = [(-170, -81)]
    for i in range(30):
        x = -170 + i * 11
        coords += [(x, -80), (x, 80), (x + 1e-7, 80), (x + 1e-7, -80)]
    coords += [(170, -80), (170, -80.99999), (-170, -80.99999), (-170, -81)]
    geometry = shapely.Polygon(coords)
    assert edge_rows(geometry, 18) > MAX_EDGE_ROWS
    monkeypatch.setattr(plan, "tile_runs", lambda *a: pytest.fail("the cover ran"))
    with pytest.raises(AoiError, match="tile rows in all"):
        cover_within_limits(geometry, 18, 10**10)


def test_the_lower_bound_never_exceeds_the_count():
    for geometry in (shapely.box(30, -2, 30.01, -1.99), shapely.box(-1, 50, 1, 51), shapely.Polygon([(0, 0), (0.02, 0), (0, 0.02)])):
        for zoom in (10, 14, 18):
            assert tile_count_lower_bound(geometry, zoom) <= count_tiles(tile_runs(geometry, zoom))


# ---- validate == enumerator; estimate at every zoom -------------------------------------------
@pytest.mark.parametrize(
    "path, reason",
    [
        (CASES / "aoi-comb" / "comb1.geojson", "tiles, above the cap of 5,000,000 tiles per job"),
        (CASES / "aoi-odd-json" / "int400.geojson", "too large"),
        (CASES / "aoi-odd-json" / "type_is_list.geojson", "type must be a string"),
    ],
)
def test_validate_refuses_what_the_enumerator_refuses_with_its_reason(capsys, path, reason, monkeypatch):
    monkeypatch.delenv("LG_MAX_TILES_PER_JOB", raising=False)
    code, out, err = run_cli(capsys, "validate", str(path))
    assert code == 2 and reason in err and "Traceback" not in err


def test_validate_applies_the_tile_cap_and_zero_tiles(capsys, tmp_path, monkeypatch):
    block = CASES / "aoi-empty-coordinates" / "aoi_null_geometry.geojson"
    monkeypatch.setenv("LG_MAX_TILES_PER_JOB", "5")
    code, _, err = run_cli(capsys, "validate", str(block))
    assert code == 2 and "AOI covers 6 tiles, above the cap of 5 tiles per job (LG_MAX_TILES_PER_JOB)" in err
    monkeypatch.setenv("LG_MAX_TILES_PER_JOB", "6")
    code, out, _ = run_cli(capsys, "validate", str(block))
    assert code == 0 and "6 zoom-18 tiles" in out


def test_validate_prints_names_escaped(capsys):
    code, out, err = run_cli(capsys, "validate", str(CASES / "aoi-control-characters" / "escape_name.geojson"))
    assert code == 0 and "\x1b" not in out + err and "legit\\x1b[2J" in out and len(out.splitlines()) == 1


@pytest.mark.parametrize("zoom", [0, 1, 2, 3, 18])
def test_estimate_area_is_the_exact_spherical_area_at_every_zoom(zoom, capsys):
    world = shapely.box(-180, -MAX_LATITUDE, 180, MAX_LATITUDE)
    runs = tile_runs(world, zoom) if zoom < 10 else tile_runs(shapely.box(30, -2, 30.01, -1.99), zoom)
    area = tiles_area_km2(runs, zoom)
    if zoom < 10:
        exact = 4 * math.pi * EARTH_RADIUS_M**2 * math.sin(math.radians(MAX_LATITUDE)) / 1e6
        assert count_tiles(runs) == 4**zoom and area == pytest.approx(exact, rel=1e-9)
    code, out, _ = run_cli(capsys, "estimate", str(CASES / "aoi-control-characters" / "escape_name.geojson"), "--zoom", str(zoom), "--json")
    assert code == 0 and json.loads(out)["tiles"] >= 1


def test_validate_refuses_a_file_above_the_enumerators_size_limit(capsys, tmp_path, monkeypatch):
    import looking_glass.pipeline.enumerator as enumerator

    monkeypatch.setattr(enumerator, "MAX_AOI_BYTES", 100)
    path = tmp_path / "big.geojson"
    path.write_bytes((CASES / "aoi-control-characters" / "escape_name.geojson").read_bytes())
    code, _, err = run_cli(capsys, "validate", str(path))
    assert code == 2 and "above the 100 byte limit" in err
