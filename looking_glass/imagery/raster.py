"""Reading georeferenced rasters (GeoTIFF/COG) the one way training and inference share.

``looking-glass prepare`` (:mod:`looking_glass.datasets.prepare`) and the GeoTIFF imagery source
(:mod:`looking_glass.imagery.geotiff`) both read imagery through this module, so a chip and an
inference tile of the same image get the same bands, nodata and colours.

Rules
-----
* **Opening.** Only GDAL's ``GTiff`` driver (GeoTIFF and Cloud-Optimized GeoTIFF) with a CRS and a
  north-up geotransform (no rotation terms) is accepted (:func:`open_geotiff`).
* **Bands.** 1-based indices: 1 index (replicated to grey RGB) or 3 (R, G, B). With no bands given
  a 1-band image is replicated and a 3-band image uses (1, 2, 3); images with 2 or 4+ bands must
  name their bands (:func:`select_bands`). Band lists written as text (``"3,2,1"``: settings, CDK
  context, command line) are parsed by :meth:`looking_glass.runtime.parsing.Parsers.bands`.
* **Validity (nodata).** A pixel is valid where the dataset mask says so (nodata value, alpha band
  or internal mask), all its selected bands are finite, and not all of them are 0 (black)
  (:meth:`RasterImage.valid_mask`).
* **Radiometry.** uint8 bands pass through. Anything else gets a per-image, per-band linear
  percentile stretch: the ``DEFAULT_STRETCH_PERCENTILES`` (2 and 98, as the 2018 original did for
  16-bit data) of the image's valid pixels map to 0 and 255, clipped. The percentiles are computed
  once per image, on a read decimated to at most ``STRETCH_SAMPLE_PX`` pixels per side.

Errors are :class:`RasterError` (a ``ValueError``) with a message naming the image and the problem.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from looking_glass.errors import LookingGlassError
from looking_glass.grid import EARTH_RADIUS_M

__all__ = [
    "DEFAULT_STRETCH_PERCENTILES",
    "STRETCH_SAMPLE_PX",
    "RasterError",
    "RasterImage",
    "check_bands",
    "check_stretch_percentiles",
    "mercator_outline",
    "open_geotiff",
    "pixel_size_m",
    "select_bands",
    "stretch_limits",
    "stretch_to_uint8",
]

# Low and high percentile of the linear stretch of non-uint8 imagery (the 2018 original's 2-98).
DEFAULT_STRETCH_PERCENTILES = (2.0, 98.0)
# Percentiles are computed on a read decimated to at most this many pixels per side.
STRETCH_SAMPLE_PX = 2048


class RasterError(LookingGlassError, ValueError):
    """The raster or its reading options cannot be used (the message says which and why)."""


def check_bands(bands: Sequence[int] | None) -> None:
    """Raise :class:`RasterError` unless ``bands`` is None or 1 or 3 one-based integer indices."""
    if bands is None:
        return
    if len(bands) not in (1, 3):
        raise RasterError(f"bands must name 1 band (grey) or 3 bands (R, G, B), got {tuple(bands)}")
    for b in bands:
        if not isinstance(b, (int, np.integer)) or isinstance(b, bool) or b < 1:
            raise RasterError(f"band indices are 1-based integers, got {b!r} in {tuple(bands)}")


def check_stretch_percentiles(percentiles: tuple[float, float]) -> None:
    """Raise :class:`RasterError` unless ``0 <= low < high <= 100``."""
    lo, hi = percentiles
    if not (0.0 <= lo < hi <= 100.0):
        raise RasterError(f"stretch_percentiles must satisfy 0 <= low < high <= 100, got {(lo, hi)}")


def open_geotiff(path: str | Path, label: str):
    """An open rasterio dataset of the GeoTIFF at ``path`` (a local path or a GDAL path such as
    ``/vsis3/...``, in the caller's GDAL environment); ``label`` names it in errors.

    Raises :class:`RasterError` when GDAL cannot read it, it is not a GeoTIFF, it has no CRS or
    its geotransform is missing or rotated.
    """
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioIOError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)  # reported below instead
            src = rasterio.open(path)
    except RasterioIOError as e:
        raise RasterError(f"{label}: not a GeoTIFF (cannot be read as a raster)") from e
    if src.driver != "GTiff":
        src.close()
        raise RasterError(f"{label}: not a GeoTIFF (GDAL reads it as {src.driver})")
    if src.crs is None:
        src.close()
        raise RasterError(f"{label}: the GeoTIFF has no CRS")
    if src.transform.is_identity or src.transform.b != 0 or src.transform.d != 0:
        src.close()
        raise RasterError(f"{label}: the GeoTIFF needs a north-up geotransform (none or rotated found)")
    return src


def select_bands(count: int, bands: Sequence[int] | None, label: str) -> tuple[int, int, int]:
    """The image's (R, G, B) band indices (1-based) for an image of ``count`` bands.

    ``bands`` None: grey for 1 band, (1, 2, 3) for 3 bands, else :class:`RasterError`. One band
    given is replicated to grey; an index above ``count`` is a :class:`RasterError`.
    """
    if bands is None:
        if count == 1:
            return (1, 1, 1)
        if count == 3:
            return (1, 2, 3)
        raise RasterError(
            f"{label}: has {count} bands; say which to use as RGB with bands (e.g. (1, 2, 3) for the first three)"
        )
    for b in bands:
        if b > count:
            raise RasterError(f"{label}: band index {b} out of range (the image has {count} band(s))")
    return tuple(bands) * 3 if len(bands) == 1 else tuple(bands)  # type: ignore[return-value]


def pixel_size_m(crs, transform, lat: float | None) -> tuple[float, float]:
    """Pixel size (x, y) in metres of a north-up ``transform`` in ``crs`` (rasterio objects).

    Geographic CRSs: degrees to metres on a sphere of the WGS 84 equatorial radius, x scaled by
    cos(``lat``) (``lat`` in degrees; None counts as the equator). Projected CRSs: the CRS's
    linear unit converted to metres.
    """
    rx, ry = abs(transform.a), abs(transform.e)
    if crs.is_geographic:
        deg = math.pi / 180 * EARTH_RADIUS_M
        return rx * deg * math.cos(math.radians(lat or 0.0)), ry * deg
    factor = crs.linear_units_factor[1] if crs.is_projected else 1.0
    return rx * factor, ry * factor


def mercator_outline(src, k: int = 32):
    """The footprint of the open dataset ``src`` in web mercator (EPSG:3857 metres) as a shapely
    polygon: its four edges, each densified to ``k`` points before reprojection."""
    import shapely
    from rasterio.warp import transform

    edge = np.linspace(0.0, 1.0, k, endpoint=False)
    cols = np.concatenate([edge, np.ones(k), 1 - edge, np.zeros(k)]) * src.width
    rows = np.concatenate([np.zeros(k), edge, np.ones(k), 1 - edge]) * src.height
    xs, ys = src.transform @ (cols, rows)
    mx, my = transform(src.crs, "EPSG:3857", list(xs), list(ys))
    return shapely.Polygon(np.column_stack([mx, my]))


class RasterImage:
    """An open GeoTIFF with its band selection and colour mapping.

    ``src`` is an open rasterio dataset (owned by the caller, who closes it), ``label`` names it,
    ``bands`` are the (R, G, B) 1-based indices from :func:`select_bands` and ``percentiles`` the
    stretch percentiles used when any selected band is not uint8. Attributes: ``unique`` (the
    distinct bands, sorted: what to read), ``pos`` (where each of R, G, B is in ``unique``) and
    ``stretch`` (None for uint8, else per-band (low, high) float64 arrays of shape (3,)).
    """

    def __init__(self, src, label: str, bands: tuple[int, int, int], percentiles: tuple[float, float]):
        self.src = src
        self.label = label
        self.bands = bands
        self.unique = sorted(set(bands))
        self.pos = [self.unique.index(b) for b in bands]
        self.stretch: tuple[np.ndarray, np.ndarray] | None = None
        if any(np.dtype(src.dtypes[b - 1]) != np.uint8 for b in bands):
            self.stretch = self._percentiles(percentiles)

    def _percentiles(self, pct: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
        h, w = self.src.height, self.src.width
        f = max(1, math.ceil(max(h, w) / STRETCH_SAMPLE_PX))
        shape = (max(1, h // f), max(1, w // f))
        data = self.src.read(self.unique, out_shape=(len(self.unique), *shape), out_dtype="float32")[self.pos]
        valid = self.valid_mask(data, self.src.dataset_mask(out_shape=shape))
        return stretch_limits(data, valid, pct)

    @staticmethod
    def valid_mask(data: np.ndarray, dataset_mask: np.ndarray) -> np.ndarray:
        """(h, w) bool: pixels of (3, h, w) ``data`` that hold data (see the module's validity
        rule); ``dataset_mask`` is GDAL's (h, w) mask, 0 where there is no data."""
        return (dataset_mask > 0) & np.isfinite(data).all(0) & (data != 0).any(0)

    def read(self, row0: int, col0: int, h: int, w: int) -> np.ndarray:
        """(3, h, w) float32 of the selected bands at pixel offset (row0, col0); NaN = nodata,
        black or outside the image."""
        from rasterio.windows import Window

        out = np.full((3, h, w), np.nan, np.float32)
        r0, c0 = max(row0, 0), max(col0, 0)
        r1, c1 = min(row0 + h, self.src.height), min(col0 + w, self.src.width)
        if r1 <= r0 or c1 <= c0:
            return out
        win = Window(c0, r0, c1 - c0, r1 - r0)
        data = self.src.read(self.unique, window=win, out_dtype="float32")[self.pos]
        valid = self.valid_mask(data, self.src.dataset_mask(window=win))
        data[:, ~valid] = np.nan
        out[:, r0 - row0 : r1 - row0, c0 - col0 : c1 - col0] = data
        return out

    def to_uint8(self, data: np.ndarray) -> np.ndarray:
        """(3, h, w) float with NaN -> (h, w, 3) uint8 with 0 on nodata."""
        return stretch_to_uint8(data, self.stretch)


def stretch_limits(
    data: np.ndarray, valid: np.ndarray, percentiles: tuple[float, float] = DEFAULT_STRETCH_PERCENTILES
) -> tuple[np.ndarray, np.ndarray]:
    """Per-band (low, high) of the linear stretch: the ``percentiles`` of each band of (3, h, w)
    ``data`` over the (h, w) ``valid`` pixels; (0, 1) where nothing is valid, and high is at
    least low + 1. The one rule of every non-uint8 image: GeoTIFFs (per image) and 16-bit or
    float tiles from tile servers (per tile, :func:`looking_glass.imagery.tiles.decode_tile`)."""
    lo, hi = np.zeros(3, np.float64), np.ones(3, np.float64)
    if valid.any():
        for i in range(3):
            lo[i], hi[i] = np.percentile(data[i][valid], percentiles)
            if hi[i] <= lo[i]:
                hi[i] = lo[i] + 1.0
    return lo, hi


def stretch_to_uint8(data: np.ndarray, stretch: tuple[np.ndarray, np.ndarray] | None) -> np.ndarray:
    """(3, h, w) float with NaN = nodata -> (h, w, 3) uint8, 0 on nodata. ``stretch`` None
    passes values through (uint8 data), else per-band (low, high) map linearly to 0 and 255,
    clipped (see :func:`stretch_limits`)."""
    invalid = np.isnan(data).any(0)
    if stretch is None:
        scaled = data
    else:
        lo, hi = stretch
        scaled = (data - lo[:, None, None]) * (255.0 / (hi - lo))[:, None, None]
    scaled = np.nan_to_num(np.clip(np.rint(scaled), 0, 255), nan=0.0)
    scaled[:, invalid] = 0
    return np.ascontiguousarray(np.moveaxis(scaled.astype(np.uint8), 0, -1))
