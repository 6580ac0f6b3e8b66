"""Exports: GeoJSON, GeoPackage, FlatGeobuf and JOSM-ready OSM XML."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import shapely
from outlines_helpers import cut_tiles

from looking_glass.outlines.errors import OutlinesError
from looking_glass.outlines.exports import (
    write_buildings,
    write_geojson,
    write_osm,
    write_vector,
)
from looking_glass.outlines.layers import read_polygons
from looking_glass.outlines.stitch import OutlineOptions, outline_tiles

S = 256


@pytest.fixture(scope="module")
def buildings():
    m = np.zeros((2 * S, 2 * S), bool)
    m[200:320, 200:320] = True
    m[240:280, 240:280] = False  # a courtyard across four tiles
    m[10:40, 10:60] = True
    m[400:430, 300:340] = True
    return list(outline_tiles(cut_tiles(m.astype(np.float32)), OutlineOptions(regularise=True)))


def test_geojson_is_rfc7946_and_reads_back(tmp_path, buildings):
    path = tmp_path / "b.geojson"
    assert write_geojson(buildings, path) == 3
    doc = json.loads(path.read_text())
    assert doc["type"] == "FeatureCollection" and "crs" not in doc
    feats = doc["features"]
    assert [f["id"] for f in feats] == [b.id for b in buildings]
    assert set(feats[0]["properties"]) == {"id", "area_m2", "z", "x", "y", "tiles", "complete"}
    for f in feats:
        poly = shapely.geometry.shape(f["geometry"])
        assert poly.exterior.is_ccw and all(not r.is_ccw for r in poly.interiors)
    layer = read_polygons(path)
    assert len(layer) == 3 and layer.crs.to_epsg() == 4326
    assert write_geojson([], tmp_path / "empty.geojson") == 0
    assert len(read_polygons(tmp_path / "empty.geojson")) == 0


@pytest.mark.parametrize("suffix", [".gpkg", ".fgb"])
def test_geopackage_and_flatgeobuf(tmp_path, buildings, suffix):
    import pyogrio

    path = tmp_path / f"b{suffix}"
    assert write_vector(buildings, path, batch=2) == 3  # two appended batches
    info = pyogrio.read_info(path)
    assert info["features"] == 3 and info["crs"] == "EPSG:4326" and "area_m2" in list(info["fields"])
    back = read_polygons(path)
    areas = sorted(g.area for g in back.geoms)
    assert areas == pytest.approx(sorted(b.polygon.area for b in buildings))
    assert write_buildings(buildings, path) == 3  # replaces the file


def test_osm_xml_opens_as_new_closed_buildings(tmp_path, buildings):
    path = tmp_path / "b.osm"
    assert write_osm(buildings, path, source="Looking Glass test") == 3
    root = ET.parse(path).getroot()
    assert root.tag == "osm" and root.get("version") == "0.6"
    kinds = [el.tag for el in root]
    assert kinds == sorted(kinds, key=["node", "way", "relation"].index)  # nodes, then ways, then relations
    nodes = {el.get("id") for el in root.iter("node")}
    assert all(int(el.get("id")) < 0 for el in root if el.tag in ("node", "way", "relation"))
    for way in root.iter("way"):
        refs = [nd.get("ref") for nd in way.iter("nd")]
        assert refs[0] == refs[-1] and len(refs) >= 4 and set(refs) <= nodes
    tagged = [el for el in root if el.find("tag[@k='building']") is not None]
    assert len(tagged) == 3
    assert all(el.find("tag[@k='source']").get("v") == "Looking Glass test" for el in tagged)
    (rel,) = root.iter("relation")
    assert rel.find("tag[@k='type']").get("v") == "multipolygon" and rel.find("tag[@k='building']").get("v") == "yes"
    assert sorted(m.get("role") for m in rel.iter("member")) == ["inner", "outer"]
    # the ways rebuild the buildings (courtyard included), and an OSM library reads every object
    coords = {el.get("id"): (float(el.get("lon")), float(el.get("lat"))) for el in root.iter("node")}
    rings = {el.get("id"): shapely.Polygon([coords[nd.get("ref")] for nd in el.iter("nd")]) for el in root.iter("way")}
    outer = next(rings[m.get("ref")] for m in rel.iter("member") if m.get("role") == "outer")
    inner = next(rings[m.get("ref")] for m in rel.iter("member") if m.get("role") == "inner")
    courtyard = next(b.polygon for b in buildings if b.polygon.interiors)
    assert outer.difference(inner).symmetric_difference(courtyard).area < 1e-3 * courtyard.area  # 1e-7 deg rounding
    import osmium

    seen = {"n": 0, "w": 0, "r": 0}
    for obj in osmium.FileProcessor(str(path)):
        seen[obj.type_str()] += 1
    assert seen == {"n": len(coords), "w": len(rings), "r": 1}


def test_unknown_suffix_and_bad_geometry(tmp_path, buildings):
    with pytest.raises(OutlinesError, match="format"):
        write_buildings(buildings, tmp_path / "b.kml")
    with pytest.raises(OutlinesError, match="polygons"):
        write_geojson([shapely.Point(0, 0)], tmp_path / "p.geojson")


def test_the_osm_export_reads_back_as_a_reference(tmp_path, buildings):
    # The .osm export has only new (negative-id) objects, as an unsaved JOSM layer does: read back
    # as the mapped reference it must give the exported buildings, courtyard relation included.
    path = tmp_path / "b.osm"
    write_osm(buildings, path)
    back = read_polygons(path)
    assert len(back) == len(buildings) and back.skipped == []
    assert all(n.split()[1].startswith("-") for n in back.names)  # named by their original ids
    for want in (b.polygon for b in buildings):
        got = min(back.geoms, key=lambda g: g.symmetric_difference(want).area)
        assert got.symmetric_difference(want).area < 1e-3 * want.area  # 1e-7 degree rounding
    assert any(g.interiors for g in back.geoms if g.geom_type == "Polygon")


def test_osm_mixing_mapped_and_new_objects(tmp_path):
    # A JOSM edit of an existing area: one uploaded building (positive ids) and one new building
    # whose way uses existing nodes and new ones; both read. Objects in osmium's order (new ones
    # first), as ``osmium sort`` leaves them.
    path = tmp_path / "mixed.osm"
    path.write_text(
        "<?xml version='1.0' encoding='UTF-8'?>\n<osm version=\"0.6\">\n"
        '<node id="-1" lat="0" lon="0.002"/><node id="-2" lat="0.001" lon="0.002"/>\n'
        '<node id="1" lat="0" lon="0"/><node id="2" lat="0" lon="0.001"/>'
        '<node id="3" lat="0.001" lon="0.001"/><node id="4" lat="0.001" lon="0"/>\n'
        '<way id="-7"><nd ref="2"/><nd ref="-1"/><nd ref="-2"/><nd ref="3"/><nd ref="2"/>'
        '<tag k="building" v="house"/></way>\n'
        '<way id="10"><nd ref="1"/><nd ref="2"/><nd ref="3"/><nd ref="4"/><nd ref="1"/>'
        '<tag k="building" v="yes"/></way>\n</osm>\n')
    back = read_polygons(path)
    assert sorted(back.names) == ["way -7", "way 10"] and back.skipped == []
    assert sorted(round(g.bounds[0], 6) for g in back.geoms) == [0.0, 0.001]
