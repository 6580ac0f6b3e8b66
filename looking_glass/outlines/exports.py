"""Exports of building outlines: GeoJSON, GeoPackage / FlatGeobuf, and OpenStreetMap XML.

Every writer takes an iterable of buildings and streams it (memory stays that of one batch, not of
the job). A building is a :class:`~.stitch.Building` (lon/lat polygon plus ``properties()``) or a
bare shapely Polygon/MultiPolygon in lon/lat (no properties). All writers return the number of
buildings written. Properties beyond the building's own (e.g. the provenance ``export`` adds:
job, model, imagery, capture date) are written as they come; ``meta`` (a flat dict of strings:
where the file comes from) goes where each format keeps file-level metadata.

- :func:`write_geojson`: an RFC 7946 FeatureCollection (EPSG:4326, counter-clockwise exteriors,
  coordinates rounded to 1e-7 degree, about a centimetre), one feature per line; ``meta`` as
  the top-level member ``"looking_glass"``;
  :class:`GeoJSONWriter` writes the same file one building at a time.
- :func:`write_vector`: GeoPackage (``.gpkg``) or FlatGeobuf (``.fgb``) through pyogrio, layer
  ``buildings``, EPSG:4326, written in appended batches; the first building's properties name
  the columns (the fixed building fields typed, any others as text); ``meta`` as the GeoPackage
  layer's metadata; FlatGeobuf keeps none across the appended batches (GDAL drops its layer
  TITLE/DESCRIPTION on append), so there ``meta``'s keys are columns of every feature.
- :func:`write_osm`: an ``.osm`` file a JOSM user opens as a new layer: every object is new
  (negative ids, no version), every way closed, ``building=yes`` and ``source=<source>`` (or the
  tags ``tags(properties)`` gives) on each building, ``meta`` in a comment after the header; a building with holes is a ``type=multipolygon`` relation whose untagged member ways
  have roles ``outer`` / ``inner``. Nodes of neighbouring buildings are not shared.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import quoteattr

import numpy as np
import shapely

from looking_glass.outlines.errors import OutlinesError
from looking_glass.outlines.georef import rfc7946

__all__ = ["DEFAULT_SOURCE", "GeoJSONWriter", "WrittenFeature", "read_written_geojson", "write_buildings", "write_geojson",
           "write_osm", "write_vector"]

DEFAULT_SOURCE = "Looking Glass building detection"
_DRIVERS = {".gpkg": "GPKG", ".fgb": "FlatGeobuf"}
_FIELDS = (("id", np.int64), ("area_m2", np.float64), ("z", np.int32), ("x", np.int32), ("y", np.int32),
           ("tiles", np.int32), ("complete", np.bool_))


def _split(item) -> tuple[object, dict]:
    if isinstance(item, shapely.Geometry):
        return item, {}
    return item.polygon, item.properties()


def _polygons(geom):
    if geom.geom_type == "Polygon":
        return [geom]
    if geom.geom_type == "MultiPolygon":
        return list(geom.geoms)
    raise OutlinesError(f"buildings must be polygons, got a {geom.geom_type}")


def _rounded_rings(poly) -> list:
    return [np.round(np.asarray(r.coords)[:, :2], 7).tolist() for r in (poly.exterior, *poly.interiors)]


class GeoJSONWriter:
    """A GeoJSON FeatureCollection written one building at a time (:func:`write_geojson`'s
    format): ``write(building)`` appends a feature, ``close()`` ends the file (also as a context
    manager). For producers that push buildings rather than hand over an iterable."""

    def __init__(self, path, meta: dict | None = None):
        self.count = 0
        self._f = open(path, "w", encoding="utf-8")  # noqa: SIM115 - closed by close()
        # One header line (read_written_geojson skips it): the file's metadata before the features.
        member = f'"looking_glass": {json.dumps(meta, separators=(",", ":"))}, ' if meta else ""
        self._f.write(f'{{"type": "FeatureCollection", {member}"features": [\n')

    def write(self, item) -> None:
        """Append one building (a Building or a lon/lat Polygon/MultiPolygon)."""
        geom, props = _split(item)
        geom = rfc7946(geom)
        polys = _polygons(geom)
        if geom.geom_type == "Polygon":
            g = {"type": "Polygon", "coordinates": _rounded_rings(polys[0])}
        else:
            g = {"type": "MultiPolygon", "coordinates": [_rounded_rings(p) for p in polys]}
        feature = {"type": "Feature", "properties": props, "geometry": g}
        if "id" in props:
            feature["id"] = props["id"]
        self._f.write((",\n" if self.count else "") + json.dumps(feature, separators=(",", ":")))
        self.count += 1

    def close(self) -> None:
        """End the FeatureCollection and close the file (once)."""
        if not self._f.closed:
            self._f.write("\n]}\n")
            self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass(frozen=True)
class WrittenFeature:
    """A building read back from a :class:`GeoJSONWriter` file: ``polygon`` (lon/lat) and its
    properties, in the form every writer here takes (like a Building)."""

    polygon: object
    props: dict

    def properties(self) -> dict:
        """The feature's properties, as written."""
        return dict(self.props)


def read_written_geojson(path) -> Iterator[WrittenFeature]:
    """The features of a file :class:`GeoJSONWriter` wrote, one at a time (it writes one feature
    a line, so memory holds one feature, whatever the file's size). Raises OutlinesError for a
    line that is not such a feature (a file not written by GeoJSONWriter)."""
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f):
            text = line.strip().rstrip(",")
            if n == 0 or not text or text == "]}":
                continue  # the FeatureCollection's opening line, and its end
            try:
                doc = json.loads(text)
                yield WrittenFeature(shapely.geometry.shape(doc["geometry"]), doc["properties"])
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                raise OutlinesError(f"{path}: line {n + 1} is not a feature GeoJSONWriter wrote ({exc})") from None


def write_geojson(buildings: Iterable, path, meta: dict | None = None) -> int:
    """Write ``buildings`` to ``path`` as a GeoJSON FeatureCollection (``meta`` as its
    ``"looking_glass"`` member); returns the count."""
    with GeoJSONWriter(path, meta) as out:
        for item in buildings:
            out.write(item)
    return out.count


def write_vector(buildings: Iterable, path, driver: str | None = None, batch: int = 10_000,
                 meta: dict | None = None) -> int:
    """Write ``buildings`` to a GeoPackage or FlatGeobuf file (driver from the suffix unless given;
    an existing file is replaced; ``meta``: see the module docstring); returns the count."""
    import pyogrio.raw

    p = Path(path)
    driver = driver or _DRIVERS.get(p.suffix.lower())
    if driver is None:
        raise OutlinesError(f"{path}: unknown vector format (use .gpkg or .fgb, or name the driver)")
    if p.exists():
        p.unlink()
    n, first = 0, True
    geoms, rows = [], []
    fields = list(_FIELDS)  # and, once the first building is seen, its other properties as text
    described = {"layer_metadata": meta} if meta and driver == "GPKG" else {}
    per_feature = {} if driver == "GPKG" else dict(meta or {})  # metadata as columns where there is none

    def flush():
        nonlocal first
        if not geoms and not first:
            return
        if first and rows:
            fields.extend((k, object) for k in {**rows[0], **per_feature} if k not in dict(_FIELDS))
        wkb = shapely.to_wkb(np.array(geoms, dtype=object)) if geoms else np.array([], dtype=object)
        data = [np.array([r.get(k, t(1) if t is np.bool_ else "" if t is object else 0) for r in rows], dtype=t)
                for k, t in fields]
        pyogrio.raw.write(str(p), wkb, data, fields=[k for k, _ in fields], driver=driver, crs="EPSG:4326",
                          geometry_type="Polygon" if all(g.geom_type == "Polygon" for g in geoms) else "MultiPolygon",
                          layer="buildings", append=not first, promote_to_multi=False, **({} if not first else described))
        first = False
        geoms.clear()
        rows.clear()

    for item in buildings:
        geom, props = _split(item)
        _polygons(geom)
        geoms.append(rfc7946(geom))
        rows.append({**per_feature, **props})
        n += 1
        if len(geoms) >= batch:
            flush()
    flush()
    return n


def write_osm(buildings: Iterable, path, source: str = DEFAULT_SOURCE, tags=None, meta: dict | None = None) -> int:
    """Write ``buildings`` to ``path`` as OSM XML for JOSM (see the module docstring); returns the
    count. ``tags``: a function of a building's properties giving its ``(key, value)`` tags after
    ``building=yes`` (default: ``source=<source>``). Nodes, ways and relations go to three
    temporary files that are then joined in the order OSM XML expects, so memory does not grow
    with the job."""
    tags_of = tags or (lambda props: [("source", source)])
    next_id = {"node": -1, "way": -1, "relation": -1}

    def new(kind: str) -> int:
        i = next_id[kind]
        next_id[kind] -= 1
        return i

    n = 0
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        parts = {k: stack.enter_context(open(Path(tmp) / k, "w+", encoding="utf-8")) for k in ("node", "way", "relation")}
        for item in buildings:
            geom, props = _split(item)
            text = "".join(f"    <tag k={quoteattr(k)} v={quoteattr(str(v))}/>\n"
                           for k, v in [("building", "yes"), *tags_of(props)])
            for poly in _polygons(geom):
                _write_polygon(poly, parts, new, text)
            n += 1
        with open(path, "w", encoding="utf-8") as out:
            out.write("<?xml version='1.0' encoding='UTF-8'?>\n<osm version=\"0.6\" generator=\"Looking Glass\">\n")
            if meta:  # "--" may not appear in an XML comment
                out.write(f"  <!-- {json.dumps(meta).replace('--', '- -')} -->\n")
            for f in parts.values():
                f.seek(0)
                shutil.copyfileobj(f, out)
            out.write("</osm>\n")
    return n


def _write_polygon(poly, parts, new, tags: str) -> None:
    ways = []
    for ring in (poly.exterior, *poly.interiors):
        coords = np.asarray(ring.coords)[:-1, :2]  # the closing point is the first node again
        ids = []
        for lon, lat in coords:
            i = new("node")
            ids.append(i)
            parts["node"].write(f'  <node id="{i}" lat="{lat:.7f}" lon="{lon:.7f}"/>\n')
        ways.append(ids + ids[:1])
    single = len(ways) == 1
    way_ids = []
    for nds in ways:
        w = new("way")
        way_ids.append(w)
        body = "".join(f'    <nd ref="{i}"/>\n' for i in nds)
        parts["way"].write(f'  <way id="{w}">\n{body}{tags if single else ""}  </way>\n')
    if not single:
        r = new("relation")
        members = "".join(f'    <member type="way" ref="{w}" role="{"outer" if k == 0 else "inner"}"/>\n'
                          for k, w in enumerate(way_ids))
        parts["relation"].write(f'  <relation id="{r}">\n{members}    <tag k="type" v="multipolygon"/>\n{tags}'
                                "  </relation>\n")


def write_buildings(buildings: Iterable, path, source: str = DEFAULT_SOURCE) -> int:
    """Write ``buildings`` in the format named by ``path``'s suffix: ``.geojson``/``.json``,
    ``.gpkg``, ``.fgb`` or ``.osm``; returns the count. Raises OutlinesError for another suffix."""
    name = str(path).lower()
    if name.endswith((".geojson", ".json")):
        return write_geojson(buildings, path)
    if name.endswith(".osm"):
        return write_osm(buildings, path, source)
    if name.endswith(tuple(_DRIVERS)):
        return write_vector(buildings, path)
    raise OutlinesError(f"{path}: unknown export format (use .geojson, .gpkg, .fgb or .osm)")
