"""``export JOB --out FILE --unmapped MAPPED``: only the job's buildings that no mapped building
touches, in any export format (e.g. .osm for a mapper's JOSM), streamed through a temporary file
that an error leaves behind neither it nor a partial ``FILE``."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest
import shapely
from test_export_buildings import ALL, JOB, _mapped_file, put_job

from looking_glass.outlines.layers import read_polygons
from looking_glass.results.bands import job_items
from looking_glass.results.buildings import job_buildings
from looking_glass.results.gap import export_unmapped
from looking_glass.results.masks import MaskError


def _job_and_mapped(aws, tmp_path):
    """The five-building job and a reference holding two of them (the smallest and the four-tile one)."""
    store, s3, bucket = put_job(aws, ALL)
    predicted = sorted(job_buildings(s3, bucket, job_items(store, JOB)), key=lambda b: b.area_m2)
    mapped = _mapped_file(tmp_path / "osm.geojson", [predicted[0].polygon, predicted[2].polygon])
    return store, s3, bucket, predicted, mapped


@pytest.mark.parametrize("fmt", ["osm", "geojson", "gpkg"])
def test_only_the_buildings_not_yet_mapped_are_written(aws, tmp_path, fmt):
    store, s3, bucket, predicted, mapped = _job_and_mapped(aws, tmp_path)
    out = tmp_path / f"todo.{fmt}"
    gap = export_unmapped(store, s3, bucket, JOB, mapped, str(out), fmt)
    assert gap.unmapped_count == 3 and gap.summary["predicted_count"] == 5 and gap.summary["mapped_count"] == 2
    if fmt == "osm":  # JOSM XML: new objects, building=yes; read back as the buildings not yet mapped
        ways = ET.parse(out).getroot().findall("way")
        assert len(ways) == 3 and all(int(w.get("id")) < 0 for w in ways)
    written = read_polygons(out).lonlat()
    expected = [b.polygon for b in (predicted[1], predicted[3], predicted[4])]
    assert sorted(round(shapely.area(g) * 1e10) for g in written) == sorted(round(g.area * 1e10) for g in expected)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["osm.geojson", f"todo.{fmt}"]  # no temporary left


def test_everything_mapped_writes_an_empty_file(aws, tmp_path):
    store, s3, bucket = put_job(aws, ALL)
    everything = [b.polygon for b in job_buildings(s3, bucket, job_items(store, JOB))]
    gap = export_unmapped(store, s3, bucket, JOB, _mapped_file(tmp_path / "all.geojson", everything),
                          str(tmp_path / "todo.geojson"), "geojson")
    assert gap.unmapped_count == 0
    assert json.loads((tmp_path / "todo.geojson").read_text())["features"] == []


def test_an_error_leaves_the_old_file_and_no_temporary(aws, tmp_path):
    store, s3, bucket = put_job(aws, ALL, masks=False)  # done tiles without stored masks
    out = tmp_path / "todo.osm"
    out.write_text("the mapper's earlier list")
    mapped = _mapped_file(tmp_path / "osm.geojson", [])
    with pytest.raises(MaskError, match="no stored mask"):
        export_unmapped(store, s3, bucket, JOB, mapped, str(out), "osm")
    assert out.read_text() == "the mapper's earlier list"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["osm.geojson", "todo.osm"]
