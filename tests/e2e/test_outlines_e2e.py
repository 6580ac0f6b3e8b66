"""Building outlines end to end on a live embedded run, as a user drives them: `submit --wait`,
then `export` (its buildings against the tiles' building_count), then `results --compare` and
`map --compare` against a partially mapped layer (the exported buildings with a known share
removed play "OpenStreetMap"): real enumerator handler, real worker processes, shipped model."""

from __future__ import annotations

import csv
import io
import json

import pytest
from conftest import SAMPLE_POLYGON, geojson_bytes, run_cli

pytestmark = pytest.mark.e2e


def test_export_then_compare_with_a_partly_mapped_layer(embedded_up, capsys):
    tmp, _ = embedded_up
    aoi = tmp / "kigali-outlines.geojson"
    aoi.write_bytes(geojson_bytes(SAMPLE_POLYGON))
    code, out, err = run_cli(capsys, "submit", str(aoi), "--wait", "--timeout", "240")
    assert code == 0, err
    job = out.strip()

    # export: every format; the GeoJSON's buildings are the tiles' building_count
    code, out, err = run_cli(capsys, "export", job, "--out", str(tmp / "b.geojson"), "--no-progress")
    assert code == 0, err
    features = json.loads((tmp / "b.geojson").read_text())["features"]
    code, table, _ = run_cli(capsys, "results", job, "--format", "csv")
    counted = sum(int(r["building_count"]) for r in csv.DictReader(io.StringIO(table)))
    assert len(features) > 10
    assert abs(len(features) - counted) <= max(1, len(features) // 50)  # equal but for L-shapes round tile corners
    assert f"{len(features):,} buildings" in out and "building_count adds up to" in out and "warning" not in err
    for fmt in ("gpkg", "osm"):
        code, out, err = run_cli(capsys, "export", job, "--out", str(tmp / f"b.{fmt}"), "--regularise", "--no-progress")
        assert code == 0, err
        assert f"{len(features):,} buildings" in out  # regularising changes shapes, never the count

    # --within: two boxes splitting the job's extent count every exported building once, whole
    import shapely
    from shapely.geometry import shape

    w, s_, e, n = shapely.total_bounds([shape(f["geometry"]) for f in features])
    mid = (w + e) / 2
    halves = tmp / "halves.geojson"
    halves.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"name": name}, "geometry": shapely.geometry.mapping(shapely.box(a, s_ - 0.01, b, n + 0.01))}
        for name, a, b in (("west", w - 0.01, mid), ("east", mid, e + 0.01))]}))
    code, out, err = run_cli(capsys, "results", job, "--within", str(halves), "--format", "csv", "--no-progress")
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert all(r["building_count"].isdigit() for r in rows)
    assert sum(int(r["building_count"]) for r in rows) == len(features)

    # a reference with every third building removed: the gap found is the removed share
    kept = [f for i, f in enumerate(features) if i % 3]
    removed = sum(f["properties"]["area_m2"] for i, f in enumerate(features) if i % 3 == 0)
    total = sum(f["properties"]["area_m2"] for f in features)
    mapped = tmp / "mapped.geojson"
    mapped.write_text(json.dumps({"type": "FeatureCollection", "features": kept}))
    code, out, err = run_cli(capsys, "results", job, "--compare", str(mapped), "--format", "geojson", "--no-progress")
    assert code == 0, err
    doc = json.loads(out)
    s = doc["summary"]
    assert s["predicted_count"] == len(features) and s["mapped_count"] == len(kept)
    assert s["completeness"] == pytest.approx(1 - removed / total, abs=0.02)
    assert s["unmapped_area_m2"] == pytest.approx(removed, rel=0.05)
    ranks = [f["properties"]["rank"] for f in doc["features"]]
    # rows with area but a count of 0 (a building counted in the row of its centre) get a note on stderr
    odd = [f for f in doc["features"] if any(f["properties"][f"{k}_area_m2"] > 0 and not f["properties"][f"{k}_count"]
                                             for k in ("mapped", "predicted"))]
    assert (f"note: {len(odd):,} row(s) have building area but a count of 0" in err) if odd else "count of 0" not in err
    assert sorted(ranks) == list(range(1, len(ranks) + 1))
    # the summary carries `results`' own totals of the same tiles (mask pixels, per-tile counts)
    code, out, err = run_cli(capsys, "results", job, "--format", "geojson")
    tot = json.loads(out)["totals"]
    assert s["results_building_area_m2"] == pytest.approx(float(tot["building_area_m2"]), abs=1e-3)
    assert s["results_building_count"] == tot["building_count"]
    assert s["predicted_area_m2"] == pytest.approx(s["results_building_area_m2"], rel=0.05)

    code, out, err = run_cli(capsys, "results", job, "--compare", str(mapped), "--zoom", "16", "--no-progress")
    assert code == 0, err and "completeness" in out.splitlines()[0]

    code, out, err = run_cli(capsys, "map", job, "--out", str(tmp / "map"), "--compare", str(mapped))
    assert code == 0, err
    unmapped = json.loads((tmp / "map" / "gap-buildings.geojson").read_text())["features"]
    assert len(unmapped) == len(features) - len(kept)
    assert f"gap.html also draws {len(kept):,} mapped footprints" in out

    # the to-do list for a mapper: only those buildings, as JOSM XML
    code, out, err = run_cli(capsys, "export", job, "--out", str(tmp / "todo.osm"), "--unmapped", str(mapped),
                             "--no-progress")
    assert code == 0, err
    assert out.startswith(f"wrote {tmp / 'todo.osm'}: {len(unmapped):,} buildings not yet mapped (osm) of "
                          f"{len(features):,} found")
    assert (tmp / "todo.osm").read_text().count("<way ") == len(unmapped)
    assert "recorded object F1" in err and "before uploading any to OpenStreetMap" in err  # the shipped model's figure
    assert (tmp / "map" / "gap.html").stat().st_size > 100_000 and (tmp / "map" / "map.html").is_file()

    code, _, err = run_cli(capsys, "export", "ffffffffffff", "--out", str(tmp / "x.geojson"))
    assert code == 2 and "error:" in err and not (tmp / "x.geojson").exists()
