"""Building labels: GeoJSON footprints read with their CRS, reprojected, rasterized, and the
signed distance to their boundary.

Rules
-----
* **Reading.** Footprints (Polygon / MultiPolygon; other geometry types are ignored) are read
  with their CRS: the legacy GeoJSON ``crs`` member (e.g. ``urn:ogc:def:crs:EPSG::32616``) when
  present, else EPSG:4326 (RFC 7946). All footprint files form one layer that labels every image.
  A file with no features is "no buildings here" (negative chips), not an error. Invalid
  polygons are repaired (``shapely.make_valid``), unreadable ones skipped; each is named in a
  warning.
* **Rasterizing.** They are reprojected to the chip's CRS and rasterized with
  ``rasterio.features.rasterize`` (pixel-centre rule, so areas are unbiased).
* **Signed distance.** :func:`signed_distance_m`, in metres at the chip's real ground resolution;
  prepare computes it on the chip plus a margin of ``sdt_clip_m`` so values near chip edges see
  the buildings (and the image edge) beyond them.

Errors are :class:`looking_glass.datasets.errors.PrepareError` naming the file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from looking_glass.datasets.errors import PrepareError

__all__ = [
    "Footprints",
    "load_footprints",
    "parse_geojson_crs",
    "project_footprints",
    "rasterize_footprints",
    "signed_distance_m",
]


def signed_distance_m(mask: np.ndarray, pixel_size_m, clip_m: float = 10.0) -> np.ndarray:
    """Signed distance to the building boundary in metres, float32, clipped to +-``clip_m``.

    ``pixel_size_m`` is one number (square pixels) or ``(x_m, y_m)``. Inside pixels get the
    distance from their centre to the nearest outside pixel centre minus half a pixel (the boundary
    lies between the two centres), outside pixels the negated distance to the nearest inside pixel
    centre minus half a pixel; so every inside pixel is >= +res/2 and every outside pixel <= -res/2,
    and ``sdt > 0`` exactly where ``mask`` is set. A mask with no building is -clip everywhere, a
    mask that is all building +clip everywhere.
    """
    from scipy import ndimage

    m = np.asarray(mask).astype(bool)
    if np.ndim(pixel_size_m) == 0:
        sx = sy = float(pixel_size_m)
    else:
        sx, sy = (float(v) for v in pixel_size_m)
    if not (sx > 0 and sy > 0 and clip_m > 0):
        raise ValueError(f"pixel size and clip must be positive, got {(sx, sy)} and {clip_m}")
    if not m.any():
        return np.full(m.shape, -clip_m, np.float32)
    if m.all():
        return np.full(m.shape, clip_m, np.float32)
    half = 0.5 * min(sx, sy)
    inside = ndimage.distance_transform_edt(m, sampling=(sy, sx))
    outside = ndimage.distance_transform_edt(~m, sampling=(sy, sx))
    sdt = np.where(m, inside - half, half - outside)
    return np.clip(sdt, -clip_m, clip_m).astype(np.float32)


def parse_geojson_crs(doc: dict, label: str):
    """The rasterio CRS of a GeoJSON document: its legacy ``crs`` member (``name`` or ``EPSG``
    type) when present, else EPSG:4326 (RFC 7946). Raises PrepareError naming ``label``."""
    from rasterio.crs import CRS
    from rasterio.errors import CRSError

    member = doc.get("crs")
    if member is None:
        return CRS.from_epsg(4326)  # RFC 7946: WGS 84 longitude/latitude
    props = member.get("properties", {}) if isinstance(member, dict) else {}
    kind = member.get("type") if isinstance(member, dict) else None
    if kind == "name" and isinstance(props.get("name"), str):
        text = props["name"]
    elif kind in ("EPSG", "epsg") and "code" in props:
        text = f"EPSG:{props['code']}"
    else:
        raise PrepareError(f"{label}: unsupported GeoJSON crs member {member!r} (use a 'name' crs or none)")
    try:
        return CRS.from_user_input(text)
    except CRSError as e:
        raise PrepareError(f"{label}: unknown CRS {text!r} in the crs member") from e


def _collect_polygons(geom, out: list, name: str, notes: list[str]) -> None:
    """Append the polygons of GeoJSON geometry ``geom`` (of the feature called ``name``) to
    ``out``: invalid ones repaired (``shapely.make_valid``, polygonal parts kept), unreadable ones
    skipped; each repair or skip noted in ``notes``."""
    import shapely
    import shapely.geometry

    if not isinstance(geom, dict):
        return
    kind = geom.get("type")
    if kind in ("Polygon", "MultiPolygon"):
        try:
            shape = shapely.geometry.shape(geom)
            if not shape.is_empty and not np.isfinite(shapely.bounds(shape)).all():
                raise ValueError("coordinates that are not finite numbers")
        except Exception as exc:  # noqa: BLE001 - malformed coordinates: skipped, with a warning
            notes.append(f"{name}: skipped, unreadable {kind} ({type(exc).__name__}: {str(exc)[:80]})")
            return
        if not shape.is_empty and not shape.is_valid:
            why = shapely.is_valid_reason(shape)
            fixed = _polygonal(shapely.make_valid(shape))
            if fixed is None:
                notes.append(f"{name}: skipped, invalid {kind} with no area once repaired ({why})")
                return
            notes.append(f"{name}: invalid {kind} repaired ({why})")
            shape = fixed
        out.append(shape)
    elif kind == "GeometryCollection":
        for g in geom.get("geometries") or []:
            _collect_polygons(g, out, name, notes)


def _polygonal(geom):
    """The polygonal part of a geometry (a make_valid result) as a Polygon or MultiPolygon, or
    None when it has no area."""
    import shapely

    parts = [g for g in shapely.get_parts(geom) if g.geom_type in ("Polygon", "MultiPolygon") and g.area > 0]
    if not parts:
        return None
    merged = shapely.union_all(parts)
    return merged if merged.geom_type in ("Polygon", "MultiPolygon") else None


def _feature_name(feat: dict, index: int) -> str:
    fid = feat.get("id")
    return f"feature {index}" + (f" (id {fid!r})" if isinstance(fid, (str, int)) and not isinstance(fid, bool) else "")


@dataclass
class Footprints:
    """One footprint file: its polygons (2-D shapely array) in its own CRS, with an STRtree.
    ``empty``: the file holds no feature with a geometry (labels "no buildings here": the images
    it covers give negative chips); ``warnings``: the geometries repaired or skipped, named."""

    source: str
    crs: object  # rasterio CRS
    geoms: np.ndarray  # shapely polygons in crs
    tree: object  # shapely STRtree
    empty: bool = False
    warnings: tuple[str, ...] = ()


def load_footprints(local: Path, label: str) -> Footprints:
    """The Polygon/MultiPolygon footprints of the GeoJSON file ``local`` (FeatureCollection,
    Feature or bare geometry); ``label`` names it in errors and warnings.

    A FeatureCollection with no features (or only features without geometry) is an empty label
    file: no buildings there (``empty``). Invalid polygons are repaired with
    ``shapely.make_valid``; unreadable ones are skipped; each is named in ``warnings``. Raises
    PrepareError for a file that is not GeoJSON, or whose features hold geometries but no polygon.
    """
    import shapely

    try:
        doc = json.loads(local.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise PrepareError(f"{label}: not GeoJSON (not valid JSON: {e})") from e
    if not isinstance(doc, dict) or "type" not in doc:
        raise PrepareError(f"{label}: not GeoJSON (no 'type' member)")
    crs = parse_geojson_crs(doc, label)
    geoms: list = []
    notes: list[str] = []
    with_geometry = 0
    kind = doc["type"]
    if kind == "FeatureCollection":
        features = doc.get("features")
        if features is not None and not isinstance(features, list):
            raise PrepareError(f"{label}: not GeoJSON ('features' is not a list)")
        for i, feat in enumerate(features or []):
            if isinstance(feat, dict) and isinstance(feat.get("geometry"), dict):
                with_geometry += 1
                _collect_polygons(feat["geometry"], geoms, _feature_name(feat, i), notes)
    elif kind == "Feature":
        if isinstance(doc.get("geometry"), dict):
            with_geometry += 1
            _collect_polygons(doc["geometry"], geoms, _feature_name(doc, 0), notes)
    elif kind in ("Polygon", "MultiPolygon", "GeometryCollection"):
        with_geometry += 1
        _collect_polygons(doc, geoms, "the geometry", notes)
    elif kind not in ("Point", "MultiPoint", "LineString", "MultiLineString"):
        raise PrepareError(f"{label}: not GeoJSON (unknown type {kind!r})")
    else:
        with_geometry += 1
    geoms = [g for g in geoms if not g.is_empty]
    empty = with_geometry == 0
    if not geoms and not empty:
        detail = f" ({'; '.join(notes[:3])})" if notes else ""
        raise PrepareError(f"{label}: no Polygon or MultiPolygon footprints in the file{detail}")
    arr = shapely.force_2d(np.array(geoms, dtype=object))
    shown = [f"{label}: {n}" for n in notes[:20]]
    if len(notes) > 20:
        shown.append(f"{label}: {len(notes) - 20} more geometries repaired or skipped")
    return Footprints(label, crs, arr, shapely.STRtree(arr), empty=empty, warnings=tuple(shown))


def project_footprints(layers: list[Footprints], dst_crs, bounds_in_dst) -> tuple[np.ndarray, object]:
    """The footprints near ``bounds_in_dst`` (left, bottom, right, top in dst_crs), reprojected
    to dst_crs, and an STRtree over them."""
    import shapely
    from rasterio.warp import transform, transform_bounds

    out = []
    for layer in layers:
        if layer.crs == dst_crs:
            near = layer.geoms[layer.tree.query(shapely.box(*bounds_in_dst))]
            out.append(near)
            continue
        try:
            b = transform_bounds(dst_crs, layer.crs, *bounds_in_dst, densify_pts=21)
        except Exception as e:  # noqa: BLE001
            raise PrepareError(f"{layer.source}: cannot relate its CRS to the image's: {e}") from e
        near = layer.geoms[np.sort(layer.tree.query(shapely.box(*b)))]
        if len(near) == 0:
            continue
        coords = shapely.get_coordinates(near)
        xs, ys = transform(layer.crs, dst_crs, coords[:, 0], coords[:, 1])
        moved = shapely.set_coordinates(near.copy(), np.column_stack([xs, ys]))
        out.append(moved[shapely.is_valid_input(moved) & np.isfinite(shapely.bounds(moved)).all(1)])
    geoms = np.concatenate(out) if out else np.array([], dtype=object)
    return geoms, shapely.STRtree(geoms)


def rasterize_footprints(geoms: np.ndarray, tree, transform, shape: tuple[int, int]) -> np.ndarray:
    """(h, w) uint8 raster, 1 inside a footprint (pixel-centre rule), of the polygons ``geoms``
    (with their STRtree ``tree``) on the grid of the affine ``transform`` and ``shape``."""
    import shapely
    from rasterio.features import rasterize
    from rasterio.transform import array_bounds

    if len(geoms) == 0:
        return np.zeros(shape, np.uint8)
    west, south, east, north = array_bounds(shape[0], shape[1], transform)
    hits = geoms[np.sort(tree.query(shapely.box(west, south, east, north)))]
    if len(hits) == 0:
        return np.zeros(shape, np.uint8)
    return rasterize(((g, 1) for g in hits), out_shape=shape, transform=transform, fill=0, dtype="uint8")
