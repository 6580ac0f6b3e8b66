"""Footprints in metres read as degrees: every reader of building footprints refuses, in one
``error:`` line naming the fix, exit 2, a file whose coordinates cannot be the longitude/latitude
degrees its CRS says they are (the rule of ``datasets.feature_tally.degrees_refusal``). The real
SpaceNet Atlanta footprints (UTM 16N metres) with their ``crs`` member dropped: ``evaluate``
crashed with a pyproj traceback, ``prepare`` wrote all-zero masks and exit 0. ``demo --truth`` is
tested in tests/e2e/test_demo_imagery.py, ``results``/``export --compare`` in
tests/integration/test_compare_notes.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import shapely
from conftest import run_cli

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "spacenet_atlanta_sample"
FOOTPRINTS = SAMPLE / "buildings.geojson"
IMAGE = str(SAMPLE / "image.tif")
WHY = "are not longitude/latitude degrees, yet the file declares no CRS"
FIX = "Declare its CRS (in GeoJSON a crs member"


def metres_without_crs(tmp_path, crs: dict | None = None) -> str:
    """The sample's footprints (UTM metres) with their crs member dropped (or replaced by ``crs``)."""
    doc = json.loads(FOOTPRINTS.read_text())
    assert "32616" in json.dumps(doc.pop("crs"))
    if crs is not None:
        doc["crs"] = crs
    path = tmp_path / "metres.geojson"
    path.write_text(json.dumps(doc))
    return str(path)


def _one_error(code, out, err):
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, err
    assert err.startswith("error: ")
    return err


@pytest.mark.parametrize("which", ["--polygons", "--truth", "--extent"])
def test_evaluate_refuses_footprints_in_metres_without_a_crs(tmp_path, capsys, which):
    bad, good = metres_without_crs(tmp_path), str(FOOTPRINTS)
    argv = {"--polygons": ["--polygons", bad, "--truth", good], "--truth": ["--polygons", good, "--truth", bad],
            "--extent": ["--polygons", good, "--truth", good, "--extent", bad]}[which]
    err = _one_error(*run_cli(capsys, "evaluate", *argv))
    assert err.startswith(f"error: {bad}: coordinates such as (") and WHY in err and FIX in err


def test_evaluate_refuses_metres_in_a_declared_geographic_crs(tmp_path, capsys):
    bad = metres_without_crs(tmp_path, {"type": "name", "properties": {"name": "EPSG:4326"}})
    err = _one_error(*run_cli(capsys, "evaluate", "--polygons", bad, "--truth", str(FOOTPRINTS)))
    assert "are not longitude/latitude degrees, yet the file declares the geographic CRS EPSG:4326" in err


def test_evaluate_refuses_a_geopackage_in_metres_without_a_crs(tmp_path, capsys):
    # The GDAL path (pyogrio): a layer written without a CRS is read as EPSG:4326 too.
    import pyogrio.raw

    doc = json.loads(FOOTPRINTS.read_text())
    geoms = [shapely.geometry.shape(f["geometry"]) for f in doc["features"]]
    gpkg = tmp_path / "metres.gpkg"
    with pytest.warns(UserWarning, match="'crs' was not provided"):
        pyogrio.raw.write(gpkg, np.array(shapely.to_wkb(geoms), dtype=object), [], [], driver="GPKG",
                          geometry_type="Polygon", crs=None)
    err = _one_error(*run_cli(capsys, "evaluate", "--polygons", str(FOOTPRINTS), "--truth", str(gpkg)))
    assert err.startswith(f"error: {gpkg}: coordinates such as (") and WHY in err


def test_evaluate_still_reads_the_same_file_with_its_crs(tmp_path, capsys):
    code, out, _ = run_cli(capsys, "evaluate", "--polygons", str(FOOTPRINTS), "--truth", str(FOOTPRINTS))
    assert code == 0 and json.loads(out)["tp"] > 0


def test_prepare_refuses_footprints_in_metres_without_a_crs_and_writes_nothing(tmp_path, capsys):
    bad = metres_without_crs(tmp_path)
    err = _one_error(*run_cli(capsys, "prepare", "--images", IMAGE, "--footprints", bad, "--out", str(tmp_path / "out")))
    assert err.startswith(f"error: {bad}: coordinates such as (") and WHY in err and FIX in err
    assert not (tmp_path / "out").exists()
