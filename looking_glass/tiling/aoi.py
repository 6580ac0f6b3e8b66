"""Reading and validating an area of interest (AOI) from GeoJSON bytes.

The same rules serve the Lambda (a bad AOI becomes a FAILED job with the reason) and the CLI (a
bad AOI is refused before upload). Invalid (self-intersecting) rings are rejected, not repaired:
a repair guesses which area the user meant, and a wrong guess silently maps the wrong place.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import shapely
import shapely.affinity
from shapely.geometry import MultiPolygon, Polygon

from looking_glass.errors import LookingGlassError
from looking_glass.grid import MAX_LATITUDE

POLYGONAL = {"Polygon", "MultiPolygon"}
GEOMETRY_TYPES = POLYGONAL | {
    "Point",
    "MultiPoint",
    "LineString",
    "MultiLineString",
    "GeometryCollection",
}
# Web-mercator clipping leaves slivers of a polar AOI; below this (square degrees) nothing is left.
MIN_AREA_DEG2 = 1e-14


class AoiError(LookingGlassError, ValueError):
    """The AOI cannot be used; the message says why, in words meant for the user."""


@dataclass
class Aoi:
    """A validated AOI: its (Multi)Polygon in lon/lat, a name and the warnings of its checks."""

    geometry: shapely.Geometry  # (Multi)Polygon in lon/lat degrees, clipped to web-mercator
    name: str
    warnings: list[str] = field(default_factory=list)


def parse_aoi(data: bytes, default_name: str = "aoi") -> Aoi:
    """Parse GeoJSON bytes into a validated AOI, or raise ``AoiError`` with a specific reason."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise AoiError(f"AOI is not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    if not text.strip():
        raise AoiError("AOI file is empty")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise AoiError(
            f"AOI is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    if not isinstance(doc, dict) or "type" not in doc:
        raise AoiError("AOI is not a GeoJSON object (expected an object with a 'type' member)")

    warnings: list[str] = []
    polygons: list[Polygon] = []
    _collect(doc, "$", polygons, warnings)
    if not polygons:
        raise AoiError("AOI has no polygonal geometry (Polygon or MultiPolygon)")

    geometry = shapely.union_all(polygons) if len(polygons) > 1 else polygons[0]
    geometry = _wrap_antimeridian(geometry, warnings)
    clipped = geometry.intersection(shapely.box(-180, -MAX_LATITUDE, 180, MAX_LATITUDE))
    if clipped.is_empty or clipped.area <= MIN_AREA_DEG2:
        raise AoiError("AOI has zero area inside the web-mercator latitude range (+-85.0511)")
    if clipped.area < geometry.area:
        warnings.append("AOI was clipped to the web-mercator latitude limit +-85.0511")
    clipped = _polygonal_part(clipped)
    return Aoi(geometry=clipped, name=_name_of(doc) or default_name, warnings=warnings)


def _wrap_antimeridian(geometry: shapely.Geometry, warnings: list[str]) -> shapely.Geometry:
    """Rings drawn across the antimeridian with longitudes beyond +-180 are split there and the
    far side moved by 360 degrees, giving the RFC 7946 form (parts meeting at +-180)."""
    west, _, east, _ = geometry.bounds
    if west >= -180 and east <= 180:
        return geometry
    parts = []
    for shift in (-360, 0, 360):
        window = shapely.box(-180 - shift, -90, 180 - shift, 90)
        piece = geometry.intersection(window)
        if not piece.is_empty and piece.area > 0:
            parts.append(shapely.affinity.translate(_polygonal_part(piece), xoff=shift))
    warnings.append("AOI crosses the antimeridian and was split at +-180 degrees")
    return shapely.union_all(parts)


def _name_of(doc: dict) -> str | None:
    name = doc.get("name")
    if isinstance(name, str) and name.strip():
        return name.strip()
    props = doc.get("properties")
    if isinstance(props, dict) and isinstance(props.get("name"), str):
        return props["name"].strip() or None
    return None


def _polygonal_part(geom: shapely.Geometry) -> shapely.Geometry:
    """Drop lines and points that a clip can leave behind."""
    if geom.geom_type in POLYGONAL:
        return geom
    parts = [g for g in getattr(geom, "geoms", []) if g.geom_type in POLYGONAL and g.area > 0]
    flat = [p for g in parts for p in (g.geoms if g.geom_type == "MultiPolygon" else [g])]
    return MultiPolygon(flat)


def _collect(obj, where: str, polygons: list, warnings: list) -> None:
    if not isinstance(obj, dict):
        raise AoiError(f"{where} is not a GeoJSON object")
    kind = obj.get("type")
    if kind == "FeatureCollection":
        features = obj.get("features")
        if not isinstance(features, list):
            raise AoiError(f"{where}.features must be a list")
        for i, feature in enumerate(features):
            _collect(feature, f"{where}.features[{i}]", polygons, warnings)
    elif kind == "Feature":
        geometry = obj.get("geometry")
        if geometry is None:
            warnings.append(f"{where} has no geometry and was ignored")
            return
        _collect(geometry, f"{where}.geometry", polygons, warnings)
    elif kind == "GeometryCollection":
        geometries = obj.get("geometries")
        if not isinstance(geometries, list):
            raise AoiError(f"{where}.geometries must be a list")
        for i, geometry in enumerate(geometries):
            _collect(geometry, f"{where}.geometries[{i}]", polygons, warnings)
    elif kind in POLYGONAL:
        polygons.extend(_polygons_from(obj, where))
    elif kind in GEOMETRY_TYPES:
        warnings.append(f"{where} is a {kind}, not polygonal, and was ignored")
    else:
        raise AoiError(f"{where} has unknown GeoJSON type {kind!r}")


def _polygons_from(obj: dict, where: str) -> list[Polygon]:
    coords = obj.get("coordinates")
    if obj["type"] == "Polygon":
        rings_list = [coords]
    else:
        if not isinstance(coords, list):
            raise AoiError(f"{where}.coordinates must be a list of polygons")
        rings_list = coords
    polygons = []
    for i, rings in enumerate(rings_list):
        here = f"{where}.coordinates" + (f"[{i}]" if obj["type"] == "MultiPolygon" else "")
        if not isinstance(rings, list) or not rings:
            raise AoiError(f"{here} must be a non-empty list of linear rings")
        checked = [_ring(ring, f"{here}[{j}]") for j, ring in enumerate(rings)]
        polygon = Polygon(checked[0], checked[1:])
        if not polygon.is_valid:
            # A ring that encloses nothing (all points on a line) is reported as zero area.
            if shapely.make_valid(polygon).area <= 0:
                raise AoiError(f"{here} has zero area")
            raise AoiError(f"{here} is not a valid polygon: {shapely.is_valid_reason(polygon)}")
        if polygon.area <= 0:
            raise AoiError(f"{here} has zero area")
        west, _, east, _ = polygon.bounds
        if west >= 180 or east <= -180:  # beyond +-180 is only for rings that cross it
            bad = west if west >= 180 else east
            raise AoiError(f"{here} longitude {bad:g} is out of range [-180, 180] (beyond is only for rings crossing the antimeridian)")
        polygons.append(polygon)
    return polygons


def _ring(ring, where: str) -> list[tuple[float, float]]:
    if not isinstance(ring, list) or len(ring) < 4:
        raise AoiError(f"{where} must be a list of at least 4 positions")
    points = []
    for k, position in enumerate(ring):
        if not isinstance(position, list) or len(position) < 2:
            raise AoiError(f"{where}[{k}] must be a position [longitude, latitude]")
        lon, lat = position[0], position[1]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (lon, lat)):
            raise AoiError(f"{where}[{k}] has non-numeric coordinates {position[:2]!r}")
        if not (math.isfinite(lon) and math.isfinite(lat)):
            raise AoiError(f"{where}[{k}] has non-finite coordinates")
        if not -360 <= lon <= 360:
            raise AoiError(f"{where}[{k}] longitude {lon} is out of range [-180, 180]")
        if not -90 <= lat <= 90:
            raise AoiError(f"{where}[{k}] latitude {lat} is out of range [-90, 90]")
        points.append((float(lon), float(lat)))
    if points[0] != points[-1]:
        raise AoiError(f"{where} is not closed (first and last positions differ)")
    return points
