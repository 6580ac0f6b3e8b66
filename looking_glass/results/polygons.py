"""The user polygons of ``results --within POLYGONS`` (and ``--compare --within``), read by the one
footprint-reader rule (:mod:`looking_glass.datasets.feature_tally`, through
:func:`looking_glass.outlines.layers.read_polygons`) and then checked as AOIs.

* Any file the polygon readers read: GeoJSON (its legacy ``crs`` member, else EPSG:4326),
  GeoPackage, FlatGeobuf, ... in any CRS; the polygons are reprojected to lon/lat.
* A feature that is no valid Polygon or MultiPolygon (a Point, a line, no geometry, a
  self-intersecting ring) is skipped; what was skipped is one warning line (counts by kind, the
  first features named). A file with features and not one usable polygon is refused with one
  line, as is a file with no feature at all.
* Coordinates that cannot be the degrees of a geographic CRS (metres of a file whose ``crs``
  member was dropped) are refused with the shared line naming the fix
  (:func:`looking_glass.datasets.feature_tally.degrees_refusal`).
* Each polygon then passes the AOI rules (:func:`looking_glass.tiling.aoi.parse_aoi`: clipped
  to web mercator, split at the antimeridian, size limits).

A polygon is named by its feature's ``name`` (or ``properties.name``), else its ``id``, else
``polygon N`` (N: its place in the file, from 1). Every error is a
:class:`~looking_glass.results.query.ResultsError` (exit status 2).
"""

from __future__ import annotations

import json

import shapely

from looking_glass.outlines.errors import OutlinesError
from looking_glass.outlines.layers import PolygonLayer, geojson_layer, read_polygons
from looking_glass.results.query import ResultsError
from looking_glass.tiling.aoi import AoiError, parse_aoi

__all__ = ["parse_polygons", "read_within_polygons"]

PURPOSE = "no polygon to total the results within"


def read_within_polygons(path, option: str = "--within") -> tuple[list[dict], list[str]]:
    """(``[{"name", "geometry"}]`` in lon/lat, the warning lines) of the polygons file ``path``
    (see the module docstring); every message starts with ``option`` and the path. Raises
    ResultsError."""
    try:
        layer = read_polygons(path, warn=False)  # its skipped-features line stays in layer.tally
    except OutlinesError as e:  # unreadable, not GeoJSON, a bad crs member, metres read as degrees
        raise ResultsError(f"{option} {e}") from None
    line = layer.tally.line() if layer.tally is not None else None
    return _polygons(layer, f"{option} "), [f"{option} {line}"] if line else []


def parse_polygons(data: bytes, source: str = "polygons file") -> list[dict]:
    """The polygons of GeoJSON ``data`` by the same rule, ``source`` starting every message; the
    skipped features' line is an :class:`~looking_glass.outlines.errors.InvalidGeometryWarning`.
    Raises ResultsError."""
    try:
        doc = json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ResultsError(f"{source}: not GeoJSON text: {exc}") from None
    try:
        layer = geojson_layer(doc, source)
    except OutlinesError as e:
        raise ResultsError(str(e)) from None
    return _polygons(layer, "")


def _polygons(layer: PolygonLayer, prefix: str) -> list[dict]:
    """The layer's polygons as AOIs in lon/lat, named; ``prefix`` starts every message."""
    if layer.tally is not None and layer.tally.nothing_usable():
        raise ResultsError(prefix + layer.tally.refusal(PURPOSE))
    if not len(layer):
        raise ResultsError(f"{prefix}{layer.source}: has no features (give at least one Polygon or MultiPolygon)")
    out = []
    for index, (geom, label, title, position) in enumerate(
            zip(layer.lonlat(), layer.names, layer.titles, layer.positions, strict=True)):
        # a reader that records no feature position (-1: OSM areas) numbers the polygons in order
        name = title or f"polygon {(position if position >= 0 else index) + 1}"
        try:
            aoi = parse_aoi(shapely.to_geojson(geom).encode(), default_name=name)
        except AoiError as exc:
            raise ResultsError(f"{prefix}{layer.source}: {label} ({name}): {exc}") from None
        out.append({"name": aoi.name, "geometry": aoi.geometry})
    return out
