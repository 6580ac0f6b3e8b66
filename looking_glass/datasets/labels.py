"""Building labels: GeoJSON footprints read with their CRS, reprojected, rasterized, and the
signed distance to their boundary.

Rules
-----
* **Reading.** Footprints (Polygon / MultiPolygon) are read with their CRS: the legacy GeoJSON
  ``crs`` member (e.g. ``urn:ogc:def:crs:EPSG::32616``) when present, else EPSG:4326 (RFC 7946).
  All footprint files form one layer that labels every image. A file with no features is "no
  buildings here" (negative chips), not an error. The rest is the rule of every footprint reader
  (:mod:`looking_glass.datasets.feature_tally`): other features (Points, LineStrings, no
  geometry, empty or unreadable ones) are skipped and counted in one line; invalid polygons are
  repaired (``shapely.make_valid``: rasterised, a repaired ring is the area its owner drew); a
  file with features but no usable polygon is refused.
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
from looking_glass.datasets.feature_tally import FeatureTally, degrees_refusal

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


def _feature_polygons(geom, name: str, tally: FeatureTally) -> list:
    """The polygons of GeoJSON geometry ``geom`` (a dict, or None) of the feature called
    ``name``: invalid ones repaired (``shapely.make_valid``, polygonal parts kept); a feature
    with none (a Point, no geometry, an empty or unreadable polygon, one with no area once
    repaired) is counted in ``tally`` as skipped, a repair as repaired."""
    import shapely
    import shapely.geometry

    if not isinstance(geom, dict):
        tally.skip(name, "no geometry")
        return []
    kind = str(geom.get("type"))
    if kind == "GeometryCollection":
        inner = FeatureTally(name)
        out = [p for i, g in enumerate(geom.get("geometries") or []) for p in _feature_polygons(g, f"{name}[{i}]", inner)]
        tally.merge(inner, skipped=False)  # the collection's non-polygon parts are not features
        if not out:
            tally.skip(name, kind, "a GeometryCollection without a polygon")
        return out
    if kind not in ("Polygon", "MultiPolygon"):
        tally.skip(name, kind)
        return []
    try:
        shape = shapely.geometry.shape(geom)
        if not shape.is_empty and not np.isfinite(shapely.bounds(shape)).all():
            raise ValueError("coordinates that are not finite numbers")
    except Exception as exc:  # noqa: BLE001 - malformed coordinates: skipped, and said
        tally.skip(name, f"unreadable {kind}", f"unreadable {kind} ({type(exc).__name__}: {str(exc)[:80]})")
        return []
    if shape.is_empty:
        tally.skip(name, f"empty {kind}")
        return []
    if not shape.is_valid:
        why = shapely.is_valid_reason(shape)
        fixed = _polygonal(shapely.make_valid(shape))
        if fixed is None:
            tally.skip(name, f"invalid {kind}", f"invalid {kind} with no area once repaired ({why})")
            return []
        tally.repair(name, f"invalid {kind} ({why})")
        shape = fixed
    return [shape]


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
    ``empty``: the file holds no feature at all (labels "no buildings here": the images it
    covers give negative chips); ``tally``: the features skipped or repaired
    (:class:`~looking_glass.datasets.feature_tally.FeatureTally`); ``warnings``: its one line, if
    any."""

    source: str
    crs: object  # rasterio CRS
    geoms: np.ndarray  # shapely polygons in crs
    tree: object  # shapely STRtree
    empty: bool = False
    warnings: tuple[str, ...] = ()
    tally: FeatureTally | None = None


def load_footprints(local: Path, label: str, purpose: str = "nothing to label the chips with") -> Footprints:
    """The Polygon/MultiPolygon footprints of the GeoJSON file ``local`` (FeatureCollection,
    Feature or bare geometry); ``label`` names it in errors and warnings.

    The rule of :mod:`looking_glass.datasets.feature_tally`: features that are not polygons
    (Points, LineStrings, no geometry, empty or unreadable geometries) are skipped and counted by
    kind; invalid polygons are repaired with ``shapely.make_valid`` (skipped when nothing with
    an area is left); ``warnings`` holds the one line saying so. A FeatureCollection with no
    features is an empty label file: no buildings there (``empty``). Raises PrepareError for a
    file that is not GeoJSON, or whose features hold no usable polygon (``purpose`` says what
    the file was for, in that message), or whose coordinates cannot be the degrees of its
    geographic CRS (metres without a crs member: :func:`~.feature_tally.degrees_refusal`).
    """
    import shapely

    try:
        doc = json.loads(local.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise PrepareError(f"{label}: not GeoJSON (not valid JSON: {e})") from e
    if not isinstance(doc, dict) or "type" not in doc:
        raise PrepareError(f"{label}: not GeoJSON (no 'type' member)")
    crs = parse_geojson_crs(doc, label)
    kind = doc["type"]
    if kind == "FeatureCollection":
        features = doc.get("features")
        if features is not None and not isinstance(features, list):
            raise PrepareError(f"{label}: not GeoJSON ('features' is not a list)")
        named = [(_feature_name(f, i) if isinstance(f, dict) else f"feature {i}",
                  f.get("geometry") if isinstance(f, dict) else None) for i, f in enumerate(features or [])]
    elif kind == "Feature":
        named = [(_feature_name(doc, 0), doc.get("geometry"))]
    elif kind in ("Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon", "GeometryCollection"):
        named = [("the geometry", doc)]
    else:
        raise PrepareError(f"{label}: not GeoJSON (unknown type {kind!r})")
    tally = FeatureTally(label)
    geoms: list = []
    for name, geom in named:
        polys = _feature_polygons(geom, name, tally)
        tally.used += bool(polys)
        geoms += polys
    if tally.nothing_usable():
        raise PrepareError(tally.refusal(purpose))
    arr = shapely.force_2d(np.array(geoms, dtype=object))
    if crs.is_geographic and len(arr):
        refusal = degrees_refusal(label, shapely.total_bounds(arr), crs.to_string() if "crs" in doc else None)
        if refusal:
            raise PrepareError(refusal)
    line = tally.line()
    return Footprints(label, crs, arr, shapely.STRtree(arr), empty=not named, warnings=(line,) if line else (),
                      tally=tally)


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
