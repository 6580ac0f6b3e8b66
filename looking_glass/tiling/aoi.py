"""Reading and validating an area of interest (AOI) from GeoJSON bytes.

The same rules serve the Lambda (a bad AOI becomes a FAILED job with the reason) and the CLI (a
bad AOI is refused before upload). Invalid (self-intersecting) rings are rejected, not repaired:
a repair guesses which area the user meant, and a wrong guess silently maps the wrong place.
"""

from __future__ import annotations

import gc
import itertools
import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import shapely
import shapely.affinity
import shapely.errors
from shapely.geometry import MultiPolygon, Polygon

from looking_glass.errors import EXIT_BAD_INPUT, LookingGlassError
from looking_glass.grid import MAX_LATITUDE
from looking_glass.runtime.imagery_sources import IMAGERY_NAME

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
# Bounds on the work one AOI may ask for, checked while reading it (before any geometry is built),
# sized so that reading and covering stay well inside the enumerator Lambda's 1024 MB:
MAX_AOI_VERTICES = 1_000_000  # positions in all rings
MAX_AOI_PARTS = 10_000  # polygons (each Polygon, each part of a MultiPolygon)
MAX_NESTING = 32  # FeatureCollection / Feature / GeometryCollection levels
# What of the AOI is stored in the job record (a DynamoDB item holds at most 400 KB).
MAX_NAME_CHARS = 200
MAX_WARNINGS = 20
MAX_WARNING_CHARS = 300


@dataclass
class _Budget:
    """Vertices and parts read so far (see MAX_AOI_VERTICES, MAX_AOI_PARTS)."""

    vertices: int = 0
    parts: int = 0

    def take(self, vertices: int, parts: int = 0) -> None:
        self.vertices += vertices
        self.parts += parts
        if self.vertices > MAX_AOI_VERTICES:
            raise AoiError(f"AOI has more than {MAX_AOI_VERTICES:,} vertices (the limit); simplify it or split it into several AOIs")
        if self.parts > MAX_AOI_PARTS:
            raise AoiError(f"AOI has more than {MAX_AOI_PARTS:,} polygons (the limit); merge them or split the AOI into several")


class AoiError(LookingGlassError, ValueError):
    """The AOI cannot be used; the message says why, in words meant for the user."""

    exit_code = EXIT_BAD_INPUT


@dataclass
class Aoi:
    """A validated AOI: its (Multi)Polygon in lon/lat, a name and the warnings of its checks."""

    geometry: shapely.Geometry  # (Multi)Polygon in lon/lat degrees, clipped to web-mercator
    name: str
    warnings: list[str] = field(default_factory=list)
    # The job's inputs beyond the shape (the top-level "looking_glass" member submit writes):
    # the registered imagery source's name (None: the deployment's default) and the active model.
    imagery: str | None = None
    model: str = ""


def parse_aoi(data: bytes, default_name: str = "aoi") -> Aoi:
    """Parse GeoJSON bytes into a validated AOI, or raise ``AoiError`` with a specific reason."""
    with _gc_paused():
        return _parse_bytes(data, default_name)


@contextmanager
def _gc_paused() -> Iterator[None]:
    """The cyclic garbage collector off inside the block (on again after, if it was on).

    Reading an AOI creates a list per position and nothing cyclic; the collector's passes over
    those (and over everything the process imported) took a third of the JSON decoding of a city
    boundary (75,500 positions)."""
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()


# The first bytes of a TIFF or BigTIFF (little- and big-endian): an image given where an AOI goes.
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def _parse_bytes(data: bytes, default_name: str) -> Aoi:
    if data[:4] in _TIFF_MAGIC:
        raise AoiError("AOI is a TIFF image, not GeoJSON: `looking-glass aoi IMAGE.tif > aoi.geojson` writes "
                       "its footprint as an AOI (or give `submit --imagery NAME` without an AOI)")
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
    except RecursionError:
        raise AoiError("AOI is not usable JSON: nested too deeply") from None
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        raise AoiError(f"AOI is not usable JSON: {str(exc)[:120]}") from None
    if not isinstance(doc, dict) or "type" not in doc:
        raise AoiError("AOI is not a GeoJSON object (expected an object with a 'type' member)")
    try:
        return _parse_document(doc, default_name)
    except AoiError as exc:
        hint = _swapped_hint(doc, str(exc)) or _projected_hint(doc, str(exc))
        if not hint:
            raise
        raise AoiError(f"{exc}; {hint}", exit_code=exc.exit_code) from None
    except (TypeError, ValueError, OverflowError, RecursionError, IndexError, KeyError, shapely.errors.ShapelyError) as exc:
        # A shape of document no rule above foresaw: still the AOI's fault, never a traceback.
        raise AoiError(f"AOI could not be read as GeoJSON ({type(exc).__name__}: {str(exc)[:120]})") from None


def _positions(node, out: list, limit: int = 100_000) -> list:
    """Up to ``limit`` (x, y) pairs of the numbers at the leaves of ``node`` (a GeoJSON document),
    for the hints below; whatever else is there is skipped (the parser reported it)."""
    if len(out) >= limit:
        return out
    if isinstance(node, list):
        if len(node) >= 2 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in node[:2]):
            out.append((float(node[0]), float(node[1])))
        else:
            for item in node:
                _positions(item, out, limit)
    elif isinstance(node, dict):
        for key, item in node.items():
            if key in ("coordinates", "geometry", "geometries", "features"):
                _positions(item, out, limit)
    return out


def _swapped_hint(doc: dict, message: str) -> str:
    """When a latitude is out of range, or the AOI lies past the web-mercator limit (|lat| 85-90),
    and every position would be valid with its two numbers swapped: the file most likely has
    [latitude, longitude], which GeoJSON's [longitude, latitude] order reads as a place near a
    pole, or nowhere. "" when not that case (then a projected CRS is the likelier cause)."""
    if "is out of range" not in message and "web-mercator latitude range" not in message:
        return ""
    points = _positions(doc, [])
    if not points or not all(abs(x) <= MAX_LATITUDE and abs(y) <= 180 for x, y in points):
        return ""
    if not any(abs(y) > MAX_LATITUDE for _, y in points):
        return ""
    x, y = points[0]
    return (f"are longitude and latitude swapped? GeoJSON wants [longitude, latitude]: the first position "
            f"[{x:g}, {y:g}] would be valid as [{y:g}, {x:g}]")


def _projected_hint(doc: dict, message: str) -> str:
    """What to do when a coordinate is out of the lon/lat range: most often the file is in a
    projected CRS (UTM metres), which GeoJSON (RFC 7946) does not allow; "" when not that case."""
    if "is out of range" not in message:
        return ""
    crs = doc.get("crs")
    name = crs.get("properties", {}).get("name") if isinstance(crs, dict) and isinstance(crs.get("properties"), dict) else None
    declared = (f"; the file declares crs {str(name)[:60]!r}" if isinstance(name, str)
                else " (are these metres of a projected CRS?)")
    return (f"AOI coordinates must be longitude/latitude degrees (GeoJSON, EPSG:4326){declared}; "
            "AOIs are not reprojected: convert it first, e.g. ogr2ogr -t_srs EPSG:4326 aoi-lonlat.geojson aoi.geojson")


def _parse_document(doc: dict, default_name: str) -> Aoi:
    warnings: list[str] = []
    polygons: list[Polygon] = []
    _collect(doc, "$", polygons, warnings, _Budget())
    if not polygons:
        kind = doc.get("type")
        if not warnings and kind in ("FeatureCollection", "GeometryCollection"):  # nothing in it at all
            members = "features" if kind == "FeatureCollection" else "geometries"
            raise AoiError(f"AOI has no features: the {kind}'s {members} list is empty "
                           "(it needs at least one Polygon or MultiPolygon)")
        why = f": {'; '.join(warnings[:3])}" if warnings else ""
        raise AoiError(f"AOI has no polygonal geometry (Polygon or MultiPolygon){why}")

    geometry = _union(polygons)
    geometry = _wrap_antimeridian(geometry, warnings)
    _, south, _, north = geometry.bounds
    if -MAX_LATITUDE <= south and north <= MAX_LATITUDE:
        # Nothing to clip. Clipping anyway costs a whole overlay of the AOI (a tenth of a second
        # for a city boundary) and moves vertices by an ulp, which shrank the area and gave
        # every large AOI a false "clipped" warning.
        clipped = geometry
    else:
        clipped = geometry.intersection(shapely.box(-180, -MAX_LATITUDE, 180, MAX_LATITUDE))
        if not clipped.is_empty and clipped.area < geometry.area:
            warnings.append("AOI was clipped to the web-mercator latitude limit +-85.0511")
    if clipped.is_empty or clipped.area <= MIN_AREA_DEG2:
        raise AoiError("AOI has zero area inside the web-mercator latitude range (+-85.0511)")
    clipped = _polygonal_part(clipped)
    imagery, model = job_inputs(doc)
    return Aoi(geometry=clipped, name=(_name_of(doc) or default_name)[:MAX_NAME_CHARS], warnings=cap_list(warnings),
               imagery=imagery, model=model)


# The top-level member of an AOI document that names the job's inputs (see job_inputs).
INPUTS_MEMBER = "looking_glass"


def job_inputs(doc: dict) -> tuple[str | None, str]:
    """(imagery source name or None, active model URI or "") from the document's top-level
    ``"looking_glass"`` member (``{"imagery": NAME, "model": URI, "rerun": TIME}``, written by
    ``submit``); AoiError when it is malformed. The member is part of the uploaded bytes, so a
    job's identity (its id) covers the imagery and model chosen."""
    inputs = doc.get(INPUTS_MEMBER)
    if inputs is None:
        return None, ""
    if not isinstance(inputs, dict):
        raise AoiError(f"AOI member {INPUTS_MEMBER!r} must be an object ({{\"imagery\": NAME, \"model\": URI}})")
    imagery = inputs.get("imagery")
    if imagery is not None and (not isinstance(imagery, str) or not IMAGERY_NAME.match(imagery)):
        raise AoiError(f"AOI member {INPUTS_MEMBER}.imagery {str(imagery)[:80]!r} is not an imagery source name")
    model = inputs.get("model", "")
    if not isinstance(model, str) or len(model) > 1024:
        raise AoiError(f"AOI member {INPUTS_MEMBER}.model must be text (the active model's URI)")
    return imagery, model


def _union(polygons: list[Polygon]) -> shapely.Geometry:
    """The union of valid ``polygons``, overlaying only those that touch or overlap another.

    The parts of a multi-part AOI (islands, boroughs) mostly stand apart, and a union of all of
    them costs an overlay of every vertex (two thirds of reading a city boundary); parts that meet
    no other are kept as they are, and the result is the same area as ``shapely.union_all``.
    Parts that meet are first merged as a coverage (parts that share whole edges and never
    overlap, as administrative boundaries do: a quarter of the overlay's time), and overlaid only
    if that fails, is not valid or has less than their summed area (they overlapped)."""
    if len(polygons) == 1:
        return polygons[0]
    parts = np.array(polygons, dtype=object)
    # Pairs whose boxes meet (each pair once, no part with itself), then the exact test on those
    # pairs, the larger part of each prepared: a quarter of the time of a tree query with the
    # predicate, which prepares every part and tests each large part against itself too.
    # (Masks, not np.unique: that imports numpy.ma.)
    first, second = shapely.STRtree(parts).query(parts)
    pair = first < second
    first, second = first[pair], second[pair]
    size = shapely.get_num_coordinates(parts)
    large = np.where(size[first] >= size[second], first, second)
    small = first + second - large
    prepared = np.zeros(len(parts), dtype=bool)
    prepared[large] = True
    shapely.prepare(parts[prepared])
    hit = shapely.intersects(parts[large], parts[small])
    meets = np.zeros(len(parts), dtype=bool)
    meets[first[hit]] = meets[second[hit]] = True
    meeting = np.flatnonzero(meets)
    alone = list(parts[~meets])
    if len(meeting) == 0:
        return MultiPolygon(alone)
    try:
        merged = shapely.coverage_union_all(parts[meeting])
        coverage = merged.is_valid and math.isclose(merged.area, shapely.area(parts[meeting]).sum(), rel_tol=1e-9)
    except shapely.errors.GEOSException:  # edges that meet without sharing their vertices
        coverage = False
    if not coverage:
        merged = shapely.union_all(parts[meeting])
    if not alone:
        return merged
    return MultiPolygon([*getattr(merged, "geoms", [merged]), *alone])


def cap_list(items: list[str], most: int = MAX_WARNINGS, chars: int = MAX_WARNING_CHARS) -> list[str]:
    """At most ``most`` items of at most ``chars`` characters each, and then one saying how many
    were cut (so a job record always fits in a DynamoDB item)."""
    out = [w if len(w) <= chars else w[: chars - 1] + "\u2026" for w in items[:most]]
    if len(items) > most:
        out.append(f"... and {len(items) - most} more warning(s) not shown")
    return out


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


def _label(obj: dict, where: str) -> str:
    """``where`` with the feature's id or name, if it has one (for warnings)."""
    props = obj.get("properties") if isinstance(obj.get("properties"), dict) else {}
    for value in (obj.get("id"), props.get("id"), props.get("name")):
        if isinstance(value, (str, int)) and not isinstance(value, bool) and str(value).strip():
            return f"{where} ({str(value)[:60]!r})"
    return where


def _collect(obj, where: str, polygons: list, warnings: list, budget: _Budget, depth: int = 0) -> None:
    if depth > MAX_NESTING:
        raise AoiError(f"{where} is nested more than {MAX_NESTING} levels deep")
    if not isinstance(obj, dict):
        raise AoiError(f"{where} is not a GeoJSON object")
    kind = obj.get("type")
    if not isinstance(kind, str):
        raise AoiError(f"{where}.type must be a string, not {type(kind).__name__}")
    if kind == "FeatureCollection":
        features = obj.get("features")
        if not isinstance(features, list):
            raise AoiError(f"{where}.features must be a list")
        for i, feature in enumerate(features):
            _collect(feature, f"{where}.features[{i}]", polygons, warnings, budget, depth + 1)
    elif kind == "Feature":
        geometry = obj.get("geometry")
        if geometry is None:
            warnings.append(f"{_label(obj, where)} has no geometry and was ignored")
            return
        if isinstance(geometry, dict) and _is_empty_geometry(geometry):
            warnings.append(f"{_label(obj, where)} has an empty geometry (no coordinates) and was ignored")
            return
        _collect(geometry, f"{where}.geometry", polygons, warnings, budget, depth + 1)
    elif kind == "GeometryCollection":
        geometries = obj.get("geometries")
        if not isinstance(geometries, list):
            raise AoiError(f"{where}.geometries must be a list")
        for i, geometry in enumerate(geometries):
            _collect(geometry, f"{where}.geometries[{i}]", polygons, warnings, budget, depth + 1)
    elif kind in POLYGONAL:
        if _is_empty_geometry(obj):
            warnings.append(f"{where} is an empty {kind} (no coordinates) and was ignored")
            return
        polygons.extend(_polygons_from(obj, where, budget))
    elif kind in GEOMETRY_TYPES:
        warnings.append(f"{where} is a {kind}, not polygonal, and was ignored")
    else:
        raise AoiError(f"{where} has unknown GeoJSON type {kind[:60]!r}")


def _is_empty_geometry(obj: dict) -> bool:
    """A Polygon or MultiPolygon whose coordinates hold no position at all (``[]``, ``[[]]``,
    ``[[[]]]``): an empty geometry, which RFC 7946 allows and which is read like a null one."""
    if not isinstance(obj.get("type"), str) or obj["type"] not in POLYGONAL:
        return False
    coords = obj.get("coordinates")
    levels = 2 if obj["type"] == "Polygon" else 3  # lists above the position lists

    def empty(value, level: int) -> bool:
        if not isinstance(value, list):
            return False
        if not value:
            return True
        return level > 0 and all(empty(v, level - 1) for v in value)

    return empty(coords, levels - 1)


def _polygons_from(obj: dict, where: str, budget: _Budget) -> list[Polygon]:
    coords = obj.get("coordinates")
    if obj["type"] == "Polygon":
        rings_list = [coords]
    else:
        if not isinstance(coords, list):
            raise AoiError(f"{where}.coordinates must be a list of polygons")
        rings_list = coords
    budget.take(0, len(rings_list))
    for rings in rings_list:  # count every position before building anything
        if isinstance(rings, list):
            budget.take(sum(len(r) for r in rings if isinstance(r, list)))
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


def _ring(ring, where: str) -> np.ndarray | list[tuple[float, float]]:
    """The ring's (lon, lat) positions, checked (AoiError naming the first bad position)."""
    if not isinstance(ring, list) or len(ring) < 4:
        raise AoiError(f"{where} must be a list of at least 4 positions")
    fast = _valid_ring_array(ring)
    if fast is not None:
        return fast
    points = []
    for k, position in enumerate(ring):
        if not isinstance(position, list) or len(position) < 2:
            raise AoiError(f"{where}[{k}] must be a position [longitude, latitude]")
        lon, lat = position[0], position[1]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (lon, lat)):
            raise AoiError(f"{where}[{k}] has non-numeric coordinates {repr(position[:2])[:80]}")
        try:
            lon, lat = float(lon), float(lat)
        except OverflowError:
            raise AoiError(f"{where}[{k}] has a coordinate too large to be a number of degrees") from None
        if not (math.isfinite(lon) and math.isfinite(lat)):
            raise AoiError(f"{where}[{k}] has non-finite coordinates")
        if not -360 <= lon <= 360:
            raise AoiError(f"{where}[{k}] longitude {lon:g} is out of range [-180, 180]")
        if not -90 <= lat <= 90:
            raise AoiError(f"{where}[{k}] latitude {lat:g} is out of range [-90, 90]")
        points.append((float(lon), float(lat)))
    if points[0] != points[-1]:
        raise AoiError(f"{where} is not closed (first and last positions differ)")
    return points


def _valid_ring_array(ring: list) -> np.ndarray | None:
    """The ring as an (n, 2) float64 array of (lon, lat) if every position passes the checks of
    :func:`_ring`, else None (and :func:`_ring` finds and names the first bad one).

    The checks of :func:`_ring`, done on whole arrays: a large AOI has hundreds of thousands of
    positions, and checking them one at a time in Python was most of the time ``cover`` and
    ``validate`` took on a city boundary. It takes the common form only (every position a list
    of 2, or of 3, ints or floats, never bools); anything else goes the slow way."""
    if set(map(type, ring)) != {list}:
        return None
    width = len(ring[0])
    if width not in (2, 3) or set(map(len, ring)) != {width}:
        return None
    # One flat list of the numbers: typed and converted as a whole, it is three times faster
    # than numpy converting the list of positions.
    flat = list(itertools.chain.from_iterable(ring))
    if not set(map(type, flat)) <= {float, int}:
        return None  # bool is its own type, so True/False are refused here too
    try:
        coords = np.array(flat, dtype=np.float64).reshape(-1, width)[:, :2]
    except OverflowError:  # an int too large for a float
        return None
    lon, lat = coords[:, 0], coords[:, 1]
    ok = (
        np.isfinite(coords).all()
        and (np.abs(lon) <= 360).all()
        and (np.abs(lat) <= 90).all()
        and (coords[0] == coords[-1]).all()
    )
    return coords if ok else None
