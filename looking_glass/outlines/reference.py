"""Already-mapped buildings read one extent at a time: the reference of a streamed mapping gap.

A country-sized job is compared band by band, and each band needs the mapped buildings of its
extent only. How they are read depends on the file:

- a GDAL vector file (GeoPackage, FlatGeobuf, Shapefile, ...): read again for each extent
  (:func:`~.layers.read_polygons` with ``bbox``, which pyogrio answers from the file's spatial
  index in GeoPackage and FlatGeobuf): memory is one band's mapped buildings, however large the
  file or the job;
- GeoJSON and OpenStreetMap extracts (``.osm.pbf`` ...): these have no spatial index, so reading
  them per band would cost a pass over the whole file for every band (hundreds for a country).
  They are read once, kept within ``bounds`` (the job's extent), and answered from an STRtree:
  memory is the mapped buildings within the job's extent (a few hundred bytes each), not the
  job's tiles. For a country-sized reference, convert it once to GeoPackage or FlatGeobuf
  (``ogr2ogr mapped.fgb mapped.geojson``) and it is read per band.

Features whose geometry is unusable, and features that are not polygons (a Point, a LineString, no
geometry), are skipped; each is named once however many extents it falls in, and
:meth:`MappedReference.warn` gives the one warning. A file that holds features but not one usable
polygon has nothing to compare against: :class:`~.errors.OutlinesError` at once.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import shapely

from looking_glass.datasets.feature_tally import FeatureTally
from looking_glass.outlines.errors import InvalidGeometryWarning
from looking_glass.outlines.layers import OSM_SUFFIXES, read_polygons

__all__ = ["MappedReference"]

_NOWHERE = (0.0, 0.0, 1e-9, 1e-9)  # an extent with no building in it: read to check the file, keep nothing


class MappedReference:
    """The mapped buildings of the file at ``path``, read per extent (see the module docstring).

    ``bounds``: a callable giving (west, south, east, north) lon/lat of everything that will be
    asked for, called only for a file read once. Attributes: ``indexed`` (read per extent),
    ``reads`` (extents asked for), ``most_held`` (the most polygons one read returned) and
    ``tally`` (the unusable or non-polygon features met so far, by kind; ``skipped`` names them). Raises
    :class:`~.errors.OutlinesError` naming the file when it cannot be read, or when it holds
    features but no usable polygon (both checked at once).
    """

    def __init__(self, path, bounds: Callable[[], tuple | None] | None = None):
        self.path = str(path)
        name = Path(path).name.lower()
        self.indexed = not name.endswith((".geojson", ".json", *OSM_SUFFIXES))
        self.reads = 0
        self.most_held = 0
        self.tally = FeatureTally(self.path)
        self._geoms = self._tree = None
        if self.indexed:
            layer = read_polygons(self.path, bbox=_NOWHERE, warn=False)  # readable? (and its type)
            self._keep_skipped(layer)
        else:
            box = bounds() if bounds is not None else None
            if bounds is not None and box is None:  # nothing will be asked for: read nothing
                box = _NOWHERE
            layer = read_polygons(self.path, bbox=box, warn=False)
            self._keep_skipped(layer)
            self._geoms = layer.lonlat()
            self._tree = shapely.STRtree(self._geoms)
        layer.require_usable("nothing to compare against")
        # Read per extent, the whole file's usable polygons are unknown: the line says no count.
        self.tally.used = None if self.indexed else layer.tally.used

    @property
    def skipped(self) -> list[str]:
        """``"NAME: REASON"`` of each unusable or non-polygon feature met so far."""
        return self.tally.skipped

    def _keep_skipped(self, layer) -> None:
        self.tally.merge(layer.tally)

    def read(self, bbox: tuple[float, float, float, float]) -> np.ndarray:
        """The usable mapped polygons (lon/lat, EPSG:4326) whose extent meets ``bbox`` (west,
        south, east, north in degrees); a few beyond it may come too (features are picked by
        their bounding boxes)."""
        self.reads += 1
        if self.indexed:
            layer = read_polygons(self.path, bbox=tuple(float(v) for v in bbox), warn=False)
            self._keep_skipped(layer)
            geoms = layer.lonlat()
        else:
            geoms = self._geoms[self._tree.query(shapely.box(*bbox), predicate="intersects")]
        self.most_held = max(self.most_held, len(geoms))
        return geoms

    def warn(self) -> None:
        """One :class:`~.errors.InvalidGeometryWarning` naming the skipped features, if any."""
        line = self.tally.line()
        if line:
            warnings.warn(line, InvalidGeometryWarning, stacklevel=3)
