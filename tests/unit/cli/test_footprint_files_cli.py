"""Every command that reads building footprints says in one ``warning:`` line what it skipped
(counts by kind) and refuses, exit 2 in one line, a file with features but no usable polygon:
``prepare --footprints`` and ``evaluate --polygons/--truth`` here; ``demo --truth`` in
tests/e2e/test_demo_imagery.py; ``results``/``map --compare`` in tests/integration/test_compare_notes.py."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from affine import Affine
from conftest import run_cli

# Two 20 m x 20 m buildings near Kigali (1e-4 deg ~ 11 m), lon/lat.
A = [[30.0600, -1.9500], [30.0602, -1.9500], [30.0602, -1.9498], [30.0600, -1.9498], [30.0600, -1.9500]]
B = [[30.0610, -1.9500], [30.0612, -1.9500], [30.0612, -1.9498], [30.0610, -1.9498], [30.0610, -1.9500]]
POINT = {"type": "Point", "coordinates": [30.0601, -1.9499]}
LINE = {"type": "LineString", "coordinates": [[30.0600, -1.9500], [30.0612, -1.9500]]}


def _write(path, geometries):
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {}, "geometry": g} for g in geometries]}))
    return str(path)


def _polygon(ring):
    return {"type": "Polygon", "coordinates": [ring]}


def _warnings(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("warning: ")]


def test_evaluate_says_in_one_line_what_it_skipped_of_the_truth(tmp_path, capsys):
    pred = _write(tmp_path / "pred.geojson", [_polygon(A), _polygon(B)])
    truth = _write(tmp_path / "truth.geojson", [_polygon(A), _polygon(B), POINT, POINT, LINE, None])
    code, out, err = run_cli(capsys, "evaluate", "--polygons", pred, "--truth", truth)
    assert code == 0 and json.loads(out)["tp"] == 2
    (line,) = _warnings(err)  # the Points were skipped without a word before
    assert line.startswith(f"warning: {truth}: 4 feature(s) skipped (2 Points, 1 LineString, 1 without geometry), "
                           "the rest used (2): feature 2: a Point, not a polygon")


@pytest.mark.parametrize("which", ["--truth", "--polygons"])
def test_evaluate_refuses_a_file_without_a_usable_polygon(tmp_path, capsys, which):
    good = _write(tmp_path / "good.geojson", [_polygon(A)])
    points = _write(tmp_path / "points.geojson", [POINT, None])
    argv = ["--polygons", points, "--truth", good] if which == "--polygons" else ["--polygons", good, "--truth", points]
    code, out, err = run_cli(capsys, "evaluate", *argv)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    purpose = "nothing to score against" if which == "--truth" else "nothing to score"
    assert err.startswith(f"error: {points}: no usable building polygon in it, {purpose} (2 feature(s), none a valid "
                          "Polygon or MultiPolygon: 1 Point, 1 without geometry: feature 0: a Point, not a polygon")


def _image(path):
    """A 64 x 64 px RGB GeoTIFF, 0.5 m pixels in EPSG:3857, over the buildings A and B."""
    from pyproj import Transformer

    x0, y0 = Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True).transform(30.0599, -1.9497)
    data = np.random.default_rng(0).integers(1, 256, (3, 64, 64), dtype=np.uint8)
    with rasterio.open(path, "w", driver="GTiff", width=64, height=64, count=3, dtype="uint8", crs="EPSG:3857",
                       transform=Affine(0.5, 0.0, x0, 0.0, -0.5, y0)) as dst:
        dst.write(data)
    return str(path)


def test_prepare_says_in_one_line_what_it_skipped_of_the_footprints(tmp_path, capsys):
    image = _image(tmp_path / "image.tif")
    labels = _write(tmp_path / "labels.geojson", [_polygon(A), POINT, LINE])
    code, out, err = run_cli(capsys, "prepare", "--images", image, "--footprints", labels, "--out",
                             str(tmp_path / "out"), "--chip-size", "32", "--max-nodata", "1")
    assert code == 0 and "wrote" in out
    (line,) = [w for w in _warnings(out + err) if labels in w]  # prepare's log: with its progress lines
    assert line == (f"warning: {labels}: 2 feature(s) skipped (1 Point, 1 LineString), the rest used (1): "
                    "feature 1: a Point, not a polygon; feature 2: a LineString, not a polygon")
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["sources"]["footprints"][0]["repaired_or_skipped"] == 2


def test_prepare_refuses_footprints_without_a_usable_polygon_and_writes_nothing(tmp_path, capsys):
    image = _image(tmp_path / "image.tif")
    labels = _write(tmp_path / "labels.geojson", [None, LINE])
    code, out, err = run_cli(capsys, "prepare", "--images", image, "--footprints", labels, "--out",
                             str(tmp_path / "out"), "--chip-size", "32")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert err.startswith(f"error: {labels}: no usable building polygon in it, nothing to label the chips with "
                          "(2 feature(s), none a valid Polygon or MultiPolygon: 1 without geometry, 1 LineString: ")
    assert not (tmp_path / "out").exists()
