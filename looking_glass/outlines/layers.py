"""Polygon layers from files, in the CRS they declare: building predictions, truth footprints and
already-mapped buildings.

Formats (by file name):

- ``.geojson`` / ``.json``: read here; the CRS is the legacy ``crs`` member when present, else
  EPSG:4326 lon/lat (RFC 7946), parsed by :func:`looking_glass.datasets.labels.parse_geojson_crs`
  (the one reader of that member). FeatureCollection, Feature or bare geometry.
- ``.osm.pbf`` / ``.pbf`` / ``.osm`` / ``.osm.bz2`` / ``.osm.gz``: an OpenStreetMap extract read
  with pyosmium: every closed way and multipolygon relation tagged ``building`` (except
  ``building=no``) assembled into an area, EPSG:4326. Negative ids (a JOSM layer never uploaded,
  or :func:`~.exports.write_osm`'s own output) are read too: libosmium's location caches hold
  non-negative node ids only, so such a file is first copied to a temporary ``.osm.pbf`` with its
  ids renumbered non-negative in the same order; features are named by their original ids.
- anything else GDAL reads (GeoPackage, FlatGeobuf, Shapefile, ...): pyogrio, first layer unless
  ``layer`` is given, CRS from the file.

One feature is one object, in file order (Polygon or MultiPolygon; a GeometryCollection's polygons
form one MultiPolygon). The rule of :mod:`looking_glass.datasets.feature_tally`, shared by every
reader of building polygons: other geometry types, features without a geometry and empty ones are
skipped, counted by kind and named in ``PolygonLayer.ignored_names`` (e.g. "feature 0: a Point, not
a polygon"); features whose geometry cannot be read or is not valid (``shapely.is_valid``; object
matching would count a repaired bow-tie as two buildings) are skipped and named in
``PolygonLayer.skipped`` ("feature 3 (id 'b7'): Self-intersection[...]"). ``PolygonLayer.tally``
holds them all, and one :class:`~.errors.InvalidGeometryWarning` gives its one line; the rest is
used. An empty layer is fine; a file with features but no usable polygon is refused by
:meth:`PolygonLayer.require_usable`. Unreadable files raise :class:`~.errors.OutlinesError` naming
the file.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import shapely

from looking_glass.datasets.feature_tally import FeatureTally, degrees_refusal, describe, geometry_kind
from looking_glass.outlines.errors import InvalidGeometryWarning, OutlinesError

__all__ = ["OSM_SUFFIXES", "PolygonLayer", "geojson_layer", "read_polygons", "to_crs"]

OSM_SUFFIXES = (".osm.pbf", ".pbf", ".osm", ".osm.bz2", ".osm.gz")
_NOT_POLYGONAL = {"POINT", "MULTIPOINT", "LINESTRING", "MULTILINESTRING"}  # GDAL layer types that hold no polygon


@dataclass
class PolygonLayer:
    """Polygons of one file. geoms: (N,) shapely Polygon/MultiPolygon in ``crs`` (a pyproj CRS),
    file order; names: (N,) labels of those features; skipped: labels and reasons of features
    not used; ignored: count of non-polygon features (and features without a geometry),
    ignored_names: their labels and geometry types; polygons_seen: the usable polygonal features
    of the whole file, inside ``bbox`` or not (None where GDAL applied the bbox while reading a layer
    that may hold polygons: not known); tally: all the skipped features, by kind
    (:class:`~looking_glass.datasets.feature_tally.FeatureTally`); titles: (N,) the name each
    feature gives itself (GeoJSON: its ``name`` or ``properties.name``, else its ``id``; GDAL: a
    ``name`` field, else ``id``), None where it gives none; positions: (N,) each feature's place
    in the file (0-based, skipped features counted)."""

    source: str
    geoms: np.ndarray
    names: list[str]
    crs: object
    skipped: list[str] = field(default_factory=list)
    ignored: int = 0
    ignored_names: list[str] = field(default_factory=list)
    polygons_seen: int | None = None
    tally: FeatureTally | None = None
    titles: list[str | None] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)

    def require_usable(self, purpose: str) -> PolygonLayer:
        """This layer, or :class:`~.errors.OutlinesError` with the one-line refusal of
        :class:`~looking_glass.datasets.feature_tally.FeatureTally` when the file held features
        and not one usable polygon (``purpose``: what it was for, e.g. "nothing to score
        against"). A file with no feature at all passes."""
        if self.tally is not None and self.tally.nothing_usable():
            raise OutlinesError(self.tally.refusal(purpose))
        return self

    def __len__(self) -> int:
        return len(self.geoms)

    def lonlat(self) -> np.ndarray:
        """The polygons in EPSG:4326 lon/lat (x = longitude)."""
        return to_crs(self.geoms, self.crs, "EPSG:4326")


def to_crs(geoms: np.ndarray, src, dst) -> np.ndarray:
    """Shapely geometries reprojected from ``src`` to ``dst`` (anything pyproj accepts), x/y in
    the traditional GIS order (longitude first)."""
    from pyproj import CRS, Transformer

    src_crs, dst_crs = CRS.from_user_input(src), CRS.from_user_input(dst)
    geoms = np.asarray(geoms, dtype=object)
    if src_crs == dst_crs or len(geoms) == 0:
        return geoms
    t = Transformer.from_crs(src_crs, dst_crs, always_xy=True)

    def move(xy):
        x, y = t.transform(xy[:, 0], xy[:, 1])
        return np.column_stack([x, y])

    return shapely.transform(geoms, move)


def _pyproj_crs(crs):
    from pyproj import CRS

    return CRS.from_user_input(crs.to_wkt() if hasattr(crs, "to_wkt") else crs)


def _polygonal(geom):
    """A Polygon/MultiPolygon of a shapely geometry (collections keep their polygons), or None."""
    if geom is None or geom.is_empty:
        return None
    kind = geom.geom_type
    if kind in ("Polygon", "MultiPolygon"):
        return shapely.force_2d(geom)
    if kind == "GeometryCollection":
        polys = [p for g in geom.geoms if (p := _polygonal(g)) is not None]
        parts = [q for p in polys for q in (p.geoms if p.geom_type == "MultiPolygon" else [p])]
        return shapely.MultiPolygon(parts) if parts else None
    return None


class _Collector:
    def __init__(self, source: str, bbox):
        self.source, self.geoms, self.names, self.titles, self.positions = source, [], [], [], []
        self.tally = FeatureTally(source)
        self.skipped, self.ignored, self.ignored_names = [], 0, []  # PolygonLayer's lists, kept as they were
        self.seen = 0  # usable polygonal features met, before the box test
        self.bounds = [np.inf, np.inf, -np.inf, -np.inf]  # of those features, before the box test
        self.box = None if bbox is None else shapely.box(*bbox)

    def ignore(self, name: str, geom, count: int = 1, reason: str | None = None) -> None:
        """A feature that is no polygon (or has no geometry): counted and named, not used."""
        kind = geom if isinstance(geom, str) else geometry_kind(geom)
        reason = describe(kind) if reason is None else reason
        self.tally.skip(name, kind, reason, count)
        self.ignored += count
        self.ignored_names.append(f"{name}: {reason}")

    def add(self, name: str, geom, error: str | None = None, title: str | None = None, position: int = -1) -> None:
        if error is not None:
            self.skipped.append(f"{name}: {error}")
            self.tally.skip(name, "unreadable geometry", error)
            return
        poly = _polygonal(geom)
        if poly is None:
            self.ignore(name, geom)
            return
        if not poly.is_valid:
            why = shapely.is_valid_reason(poly)
            self.skipped.append(f"{name}: {why}")
            self.tally.skip(name, f"invalid {poly.geom_type}", f"invalid {poly.geom_type} ({why})")
            return
        self.seen += 1
        x0, y0, x1, y1 = poly.bounds
        b = self.bounds
        self.bounds = [min(b[0], x0), min(b[1], y0), max(b[2], x1), max(b[3], y1)]
        if self.box is not None and not poly.intersects(self.box):
            return
        self.geoms.append(poly)
        self.names.append(name)
        self.titles.append(title)
        self.positions.append(position)

    def require_degrees(self, crs, declared: bool, bounds=None) -> None:
        """Raise OutlinesError when ``crs`` is geographic and the polygons' coordinates
        (``bounds``, default those of every polygon met) cannot be degrees: see
        :func:`~looking_glass.datasets.feature_tally.degrees_refusal`."""
        if not crs.is_geographic:
            return
        b = self.bounds if bounds is None else bounds
        b = [np.nan] * 4 if not np.isfinite(b).all() else b
        refusal = degrees_refusal(self.source, b, crs.to_string() if declared else None)
        if refusal:
            raise OutlinesError(refusal)

    def layer(self, crs, warn: bool, seen_all: bool = True) -> PolygonLayer:
        self.tally.used = self.seen if seen_all else None
        line = self.tally.line()
        if line and warn:
            warnings.warn(line, InvalidGeometryWarning, stacklevel=3)
        arr = np.empty(len(self.geoms), dtype=object)
        arr[:] = self.geoms
        return PolygonLayer(self.source, arr, self.names, crs, self.skipped, self.ignored, self.ignored_names,
                            self.seen if seen_all else None, self.tally, self.titles, self.positions)


def _feature_name(i: int, feat: dict) -> str:
    fid = feat.get("id")
    props = feat.get("properties")
    if fid is None and isinstance(props, dict):
        fid = props.get("id")
    return f"feature {i}" + (f" (id {fid!r})" if fid is not None else "")


def _feature_title(feat: dict) -> str | None:
    """The name a GeoJSON feature gives itself: ``name`` or ``properties.name``, else its ``id``."""
    props = feat.get("properties")
    for value in (feat.get("name"), props.get("name") if isinstance(props, dict) else None):
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None if feat.get("id") is None else str(feat["id"])


def _read_geojson(path: Path, label: str, bbox, warn: bool) -> PolygonLayer:
    try:
        doc = json.loads(path.read_text(encoding="utf-8-sig"))
    except (UnicodeDecodeError, ValueError) as e:
        raise OutlinesError(f"{label}: not GeoJSON (not valid JSON: {e})") from e
    return _clip(geojson_layer(doc, label, warn=warn), bbox)


def geojson_layer(doc, label: str, *, warn: bool = True) -> PolygonLayer:
    """The :class:`PolygonLayer` of a decoded GeoJSON document (``label`` names it in messages),
    by the rule of :func:`read_polygons`: its CRS from the ``crs`` member, else EPSG:4326; the
    features that are no valid polygon skipped and said in one warning; coordinates that cannot
    be the degrees of a geographic CRS refused. Raises :class:`~.errors.OutlinesError`."""
    from looking_glass.datasets.errors import PrepareError
    from looking_glass.datasets.labels import parse_geojson_crs

    if not isinstance(doc, dict) or "type" not in doc:
        raise OutlinesError(f"{label}: not GeoJSON (no 'type' member)")
    try:
        crs = _pyproj_crs(parse_geojson_crs(doc, label))
    except PrepareError as e:
        raise OutlinesError(str(e)) from e
    kind = doc["type"]
    if kind == "FeatureCollection":
        features = doc.get("features") or []
    elif kind == "Feature":
        features = [doc]
    else:
        features = [{"type": "Feature", "geometry": doc}]
    out = _Collector(label, None)
    for i, feat in enumerate(features):
        if not isinstance(feat, dict):
            out.add(f"feature {i}", None, "not a GeoJSON Feature")
            continue
        geom = feat.get("geometry")
        if geom is None:
            out.ignore(_feature_name(i, feat), None)
            continue
        try:
            shape = shapely.geometry.shape(geom)
        except Exception as e:  # noqa: BLE001 - malformed coordinates of one feature
            out.add(_feature_name(i, feat), None, f"unreadable geometry ({e})")
            continue
        out.add(_feature_name(i, feat), shape, title=_feature_title(feat), position=i)
    out.require_degrees(crs, declared=doc.get("crs") is not None)
    return out.layer(crs, warn)


def _clip(layer: PolygonLayer, bbox) -> PolygonLayer:
    """Keep the features intersecting ``bbox`` (lon/lat west, south, east, north)."""
    if bbox is None or len(layer) == 0:
        return layer
    hits = shapely.intersects(layer.lonlat(), shapely.box(*bbox))

    def kept(values: list) -> list:
        return [v for v, h in zip(values, hits, strict=True) if h]

    return PolygonLayer(layer.source, layer.geoms[hits], kept(layer.names), layer.crs, layer.skipped, layer.ignored,
                        layer.ignored_names, layer.polygons_seen, layer.tally, kept(layer.titles), kept(layer.positions))


def _has_negative_ids(obj) -> bool:
    """Whether a building way/relation is or refers to a new (negative-id) object."""
    if obj.id < 0:
        return True
    if hasattr(obj, "nodes"):
        return any(n.ref < 0 for n in obj.nodes)
    return any(m.ref < 0 for m in obj.members)


def _renumbered_copy(path: Path, out: Path) -> int:
    """Copy the OSM file at ``path`` to ``out`` (``.osm.pbf``) with ids made non-negative in the
    same order (osmium's: new objects ``-1, -2, ...`` before the others): ``-n`` becomes ``n`` and
    ``p >= 0`` becomes ``p + K + 1``, K the largest ``n``; references follow. Returns K."""
    import osmium

    top = 0
    for obj in osmium.FileProcessor(str(path)):
        top = max(top, -obj.id)

    def fix(i: int) -> int:
        return -i if i < 0 else i + top + 1

    writer = osmium.SimpleWriter(str(out))
    try:
        for obj in osmium.FileProcessor(str(path)):
            if obj.is_node():
                writer.add_node(obj.replace(id=fix(obj.id)))
            elif obj.is_way():
                writer.add_way(obj.replace(id=fix(obj.id), nodes=[fix(n.ref) for n in obj.nodes]))
            else:
                writer.add_relation(obj.replace(id=fix(obj.id), members=[(m.type, fix(m.ref), m.role)
                                                                         for m in obj.members]))
    finally:
        writer.close()
    return top


def _osm_areas(path: Path, out: _Collector, top: int | None) -> bool:
    """Add the building areas of the OSM file at ``path`` to ``out``; ``top``: the K of a copy
    made by :func:`_renumbered_copy` (features are named by their original ids). Returns whether a building way or
    relation is or refers to a negative-id object (then its area cannot be assembled here)."""
    import osmium

    factory = osmium.geom.WKBFactory()
    negative = False
    proc = osmium.FileProcessor(str(path)).with_areas().with_filter(osmium.filter.KeyFilter("building"))
    for obj in proc:
        if not obj.is_area():
            if top is None and not obj.is_node() and not negative:
                negative = _has_negative_ids(obj)
            continue
        if obj.tags.get("building") == "no":
            continue
        oid = obj.orig_id()
        oid = oid if top is None else -oid if oid <= top else oid - top - 1
        name = f"{'way' if obj.from_way() else 'relation'} {oid}"
        try:
            geom = shapely.from_wkb(factory.create_multipolygon(obj))
        except Exception as e:  # noqa: BLE001 - an area osmium cannot assemble
            out.add(name, None, f"cannot build its geometry ({e})")
            continue
        if len(geom.geoms) == 1:
            geom = geom.geoms[0]
        out.add(name, geom)
    return negative


def _read_osm(path: Path, label: str, bbox, warn: bool) -> PolygonLayer:
    import tempfile

    from pyproj import CRS

    out = _Collector(label, bbox)
    try:
        if _osm_areas(path, out, None):  # new objects: read again from a renumbered copy
            out = _Collector(label, bbox)
            with tempfile.TemporaryDirectory(prefix="lg-osm-") as tmp:
                copy = Path(tmp) / "renumbered.osm.pbf"
                _osm_areas(copy, out, _renumbered_copy(path, copy))
    except RuntimeError as e:
        raise OutlinesError(f"{label}: not a readable OpenStreetMap file ({e})") from e
    return out.layer(CRS.from_epsg(4326), warn)


def _read_ogr(path: Path, label: str, bbox, warn: bool, layer) -> PolygonLayer:
    import pyogrio
    from pyogrio.errors import DataLayerError, DataSourceError
    from pyproj import CRS

    try:
        info = pyogrio.read_info(path, layer=layer)
        crs = CRS.from_user_input(info["crs"]) if info.get("crs") else CRS.from_epsg(4326)
        total = info.get("total_bounds")
        if total is not None:  # the whole file's extent: a bbox read sees only part of it
            _Collector(label, None).require_degrees(crs, declared=bool(info.get("crs")), bounds=list(total))
        native_bbox = None
        if bbox is not None:
            box = to_crs(np.array([shapely.box(*bbox).segmentize(abs(bbox[2] - bbox[0]) / 8 or 1)]),
                         "EPSG:4326", crs)[0]
            native_bbox = tuple(box.bounds)
        meta, _, wkb, fields = pyogrio.raw.read(path, layer=layer, bbox=native_bbox)
    except (DataSourceError, DataLayerError, OSError) as e:
        raise OutlinesError(f"{label}: cannot read it as a vector file ({e})") from e
    ids = fields[list(meta["fields"]).index("id")] if "id" in list(meta["fields"]) else None
    titles = fields[list(meta["fields"]).index("name")] if "name" in list(meta["fields"]) else ids
    out = _Collector(label, None)
    for i, blob in enumerate(wkb):
        name = f"feature {i}" + (f" (id {ids[i]!r})" if ids is not None else "")
        title = None if titles is None or titles[i] is None or str(titles[i]).strip() == "" else str(titles[i]).strip()
        if blob is None:
            out.ignore(name, None)
            continue
        try:
            geom = shapely.from_wkb(blob)
        except shapely.errors.GEOSException as e:
            out.add(name, None, f"unreadable geometry ({e})")
            continue
        out.add(name, geom, title=title, position=i)
    if total is None:  # the format keeps no extent: check the features read
        out.require_degrees(crs, declared=bool(info.get("crs")))
    # With a bbox GDAL reads only the features there: the whole file's polygons are known only
    # when it read everything, or when the layer declares a type that holds none.
    declared = str(info.get("geometry_type") or "").upper().replace(" ", "").rstrip("ZM").removesuffix("25D")
    count = int(info.get("features") or 0)
    if bbox is not None and declared in _NOT_POLYGONAL and count > 0 and not out.ignored:
        out.ignore(f"all {count:,} features", str(info["geometry_type"]), count,
                   f"the layer holds {info['geometry_type']}s, not polygons")
    return out.layer(crs, warn, seen_all=bbox is None or declared in _NOT_POLYGONAL)


def read_polygons(path, *, bbox=None, layer=None, warn: bool = True) -> PolygonLayer:
    """The :class:`PolygonLayer` of the file at ``path`` (see the module docstring).

    ``bbox`` (west, south, east, north in lon/lat degrees) keeps only features intersecting it;
    ``layer`` picks a layer of a multi-layer file (GDAL formats). ``warn=False`` leaves the
    skipped features in ``PolygonLayer.skipped`` without a warning.
    """
    p = Path(path)
    label = str(path)
    if not p.is_file():
        raise OutlinesError(f"{label}: no such file")
    name = p.name.lower()
    if name.endswith((".geojson", ".json")):
        return _read_geojson(p, label, bbox, warn)
    if name.endswith(OSM_SUFFIXES):
        return _read_osm(p, label, bbox, warn)
    return _read_ogr(p, label, bbox, warn, layer)
