"""What a reader of building footprints did with each feature of one file: one rule, one line.

Every command that reads building polygons from a file (``prepare --footprints``, ``demo``/``up
--truth``, ``evaluate --polygons/--truth``, ``results``/``map``/``export`` with ``--compare`` or
``--unmapped``, ``results --within``) keeps a :class:`FeatureTally` of the file and follows the same rule:

* a Polygon or MultiPolygon (or the polygons of a GeometryCollection) is a building footprint;
* anything else is skipped and counted by kind: a Point, MultiPoint, LineString or
  MultiLineString, a feature without a geometry (``"geometry": null``), an empty geometry, an
  unreadable one (malformed coordinates), an invalid polygon that the reader does not or cannot
  repair;
* what was skipped is said in **one** line (:meth:`FeatureTally.line`), counts by kind first,
  then the first few features named;
* a file that holds features of which not one is usable is refused with one line
  (:meth:`FeatureTally.refusal`): nothing to label, score or compare with. A file with no
  feature at all is not refused here: each command says what an empty file means to it.

The readers differ in one thing, on purpose: ``prepare`` and ``--truth`` rasterise the polygons,
so an invalid polygon is repaired (``shapely.make_valid``) and counted as repaired; object
matching and the mapping gap compare polygon with polygon, where a repaired bow-tie would be two
buildings, so there an invalid polygon is skipped.

One more rule holds for every reader: a file read in a geographic CRS (declared, or the
longitude/latitude degrees a GeoJSON file without a ``crs`` member is, RFC 7946) whose coordinates
cannot be degrees (|x| > 180 or |y| > 90, e.g. -9.4e6: metres of a projected CRS whose ``crs``
member was dropped) is refused with one line naming the fix (:func:`degrees_refusal`). Read as
degrees such a file raised a pyproj traceback, or matched nothing and scored 0 without a word.
"""

from __future__ import annotations

from collections import Counter

__all__ = ["FeatureTally", "degrees_refusal", "describe", "geometry_kind"]

_SHOW = 5  # features named in the line
_TYPES = ("Point", "MultiPoint", "LineString", "MultiLineString", "LinearRing", "Polygon", "MultiPolygon",
          "GeometryCollection")


def degrees_refusal(label: str, bounds, declared: str | None) -> str | None:
    """The one-line refusal of the file ``label`` whose coordinates were to be longitude/latitude
    degrees but cannot be: ``bounds`` (xmin, ymin, xmax, ymax of its polygons, NaN when it has
    none) past +-180 / +-90. ``declared``: the geographic CRS the file names (e.g. "EPSG:4326"),
    or None when it names none and is read as EPSG:4326 by default. None when the bounds are
    degrees (or there are none)."""
    import math

    xmin, ymin, xmax, ymax = (float(v) for v in bounds)
    if any(math.isnan(v) for v in (xmin, ymin, xmax, ymax)):
        return None
    if -180 <= xmin and xmax <= 180 and -90 <= ymin and ymax <= 90:
        return None
    x, y = (xmin, ymin) if abs(xmin) > 180 or abs(ymin) > 90 else (xmax, ymax)
    how = (f"yet the file declares the geographic CRS {declared}" if declared
           else "yet the file declares no CRS (GeoJSON without a crs member is EPSG:4326 degrees)")
    return (f"{label}: coordinates such as ({x:.6g}, {y:.6g}) are not longitude/latitude degrees, {how}: "
            "metres of a projected CRS? Declare its CRS (in GeoJSON a crs member, e.g. "
            '"crs": {"type": "name", "properties": {"name": "EPSG:3857"}}) or reproject it: '
            "ogr2ogr -s_srs EPSG:<its CRS> -t_srs EPSG:4326 out.geojson in.geojson")


def geometry_kind(geom) -> str:
    """The kind a skipped feature is counted under: ``"no geometry"`` for None, ``"empty
    Polygon"`` (etc.) for an empty shapely geometry, else its type (``"Point"``); a GeoJSON
    geometry dict gives its ``type`` member."""
    if geom is None:
        return "no geometry"
    if isinstance(geom, dict):
        return str(geom.get("type"))
    return f"empty {geom.geom_type}" if geom.is_empty else geom.geom_type


def describe(kind: str) -> str:
    """How a skipped feature of ``kind`` is named: ``"a Point, not a polygon"``, ``"no
    geometry"``, ``"an empty Polygon"``."""
    if kind == "no geometry":
        return kind
    return f"an {kind}" if kind.startswith("empty") else f"a {kind}, not a polygon"


def _counted(kind: str, n: int) -> str:
    """``1 Point``, ``2 Points``, ``3 without geometry``, ``2 empty Polygons``."""
    if kind == "no geometry":
        return f"{n:,} without geometry"
    plural = n != 1 and kind.split(" ")[-1] in _TYPES
    return f"{n:,} {kind}{'s' if plural else ''}"


class FeatureTally:
    """The features of the file ``label`` that a reader skipped or repaired, each named once.

    ``used``: the usable polygon features met (None where the reader cannot know, e.g. a file read
    one extent at a time). Features are keyed by name, so a feature met again (a second extent)
    is counted once."""

    def __init__(self, label: str):
        self.label = label
        self.used: int | None = 0
        self._skipped: dict[str, tuple[str, str, int]] = {}  # name -> (kind, reason, features)
        self._repaired: dict[str, str] = {}  # name -> reason

    def skip(self, name: str, kind: str, reason: str | None = None, count: int = 1) -> None:
        """Count the feature ``name`` as skipped, under ``kind`` (:func:`geometry_kind`, or e.g.
        ``"invalid Polygon"``); ``reason`` is how the line names it (default: what it is).
        ``count`` > 1: ``name`` stands for that many features (a whole layer of Points)."""
        self._skipped.setdefault(name, (kind, describe(kind) if reason is None else reason, count))

    def repair(self, name: str, reason: str) -> None:
        """Note that the feature ``name`` was an invalid polygon, used once repaired."""
        self._repaired.setdefault(name, reason)

    def merge(self, other: FeatureTally, skipped: bool = True) -> None:
        """Add the repaired features of ``other`` (the same file read again, or parts of one
        feature) and, with ``skipped``, its skipped ones."""
        for name, entry in (other._skipped.items() if skipped else ()):
            self._skipped.setdefault(name, entry)
        for name, reason in other._repaired.items():
            self._repaired.setdefault(name, reason)

    @property
    def skipped(self) -> list[str]:
        """``"NAME: REASON"`` of each skipped feature, in the order met."""
        return [f"{name}: {reason}" for name, (_, reason, _) in self._skipped.items()]

    @property
    def repaired(self) -> list[str]:
        """``"NAME: REASON"`` of each repaired feature, in the order met."""
        return [f"{name}: {reason}" for name, reason in self._repaired.items()]

    def counts(self) -> dict[str, int]:
        """Skipped features by kind, most first: {"Point": 2, "no geometry": 1, ...}."""
        counts: Counter = Counter()
        for kind, _, n in self._skipped.values():
            counts[kind] += n
        return dict(counts.most_common())

    @property
    def skipped_count(self) -> int:
        """Features skipped (a whole layer skipped at once counts its features)."""
        return sum(n for _, _, n in self._skipped.values())

    def _kinds(self) -> str:
        return ", ".join(_counted(k, n) for k, n in self.counts().items())

    @staticmethod
    def _named(items: list[str]) -> str:
        more = f"; and {len(items) - _SHOW:,} more" if len(items) > _SHOW else ""
        return "; ".join(items[:_SHOW]) + more

    def line(self) -> str | None:
        """One line saying what was skipped (counts by kind, then the first features named) and
        repaired, e.g. ``"fp.geojson: 2 feature(s) skipped (1 Point, 1 without geometry), the rest
        used (14): feature 1: a Point, not a polygon; feature 2: no geometry"``; None when nothing
        was."""
        parts = []
        if self._skipped:
            used = "" if self.used is None else f" ({self.used:,})"
            parts.append(f"{self.skipped_count:,} feature(s) skipped ({self._kinds()}), the rest used{used}: "
                         f"{self._named(self.skipped)}")
        if self._repaired:
            parts.append(f"{len(self._repaired):,} invalid polygon(s) repaired (shapely.make_valid) and used: "
                         f"{self._named(self.repaired)}")
        return f"{self.label}: " + "; ".join(parts) if parts else None

    def nothing_usable(self) -> bool:
        """Whether the file held features and not one was usable (so it must be refused)."""
        return bool(self._skipped) and self.used == 0

    def refusal(self, purpose: str) -> str:
        """The one-line refusal of a file with nothing usable: ``"LABEL: no usable building
        polygon in it, PURPOSE (N feature(s): 1 Point, ...: named); give ..."``."""
        return (f"{self.label}: no usable building polygon in it, {purpose} ({self.skipped_count:,} feature(s), "
                f"none a valid Polygon or MultiPolygon: {self._kinds()}: {self._named(self.skipped)}); "
                "give building footprints as Polygon or MultiPolygon features")
