"""Reading georeferenced rasters (GeoTIFF/COG) the one way training and inference share.

``looking-glass prepare`` (:mod:`looking_glass.datasets.prepare`) and the GeoTIFF imagery source
(:mod:`looking_glass.imagery.geotiff`) both read imagery through this module, so a chip and an
inference tile of the same image get the same bands, nodata and colours.

Rules
-----
* **Opening.** Only GDAL's ``GTiff`` driver (GeoTIFF and Cloud-Optimized GeoTIFF) with a CRS and an
  axis-aligned geotransform is accepted (:func:`open_geotiff`): north-up, or south-up (positive y
  pixel size, rows stored south first), which :class:`RasterImage` reads as the north-up image it
  is (``transform``, ``bounds`` and every read are north-up). Rotated or sheared geotransforms and
  GCP/RPC georeferencing are refused with one reason (warp the file first), by every command.
* **Bands.** 1-based indices: 1 index (replicated to grey RGB) or 3 (R, G, B). With no bands given
  a 1-band image is replicated and a 3-band image uses (1, 2, 3), alpha bands not counted (grey +
  alpha and RGBA need no band list); other images must name their bands (:func:`select_bands`). Band lists written as text (``"3,2,1"``: settings, CDK
  context, command line) are parsed by :meth:`looking_glass.runtime.parsing.Parsers.bands`.
* **Validity (nodata).** A pixel is valid where the dataset mask says so (nodata value, NaN nodata,
  alpha band or internal mask: GDAL's dataset mask), all its selected bands are finite, and not
  all of them are 0 (black) (:meth:`RasterImage.valid_mask`). The same rule in ``prepare``, the
  worker's GeoTIFF source and ``serve-tiles``.
* **Radiometry.** uint8 bands pass through. Anything else gets a per-image, per-band linear
  percentile stretch: the ``DEFAULT_STRETCH_PERCENTILES`` (2 and 98, as the 2018 original did for
  16-bit data) of the image's valid pixels map to 0 and 255, clipped. The percentiles are computed
  once per image, on a read decimated to at most ``STRETCH_SAMPLE_PX`` pixels per side: from an
  overview when the file has one (a COG: one small read), else every n-th pixel of every n-th row,
  read strip by strip, so a very large file costs one pass over its blocks and a bounded amount of
  memory (about ``STRIP_PX`` pixels at a time), never the whole raster. Reads run with GDAL's
  block cache capped (``READ_OPTIONS``). The images of a mosaic share one stretch instead
  (:mod:`looking_glass.imagery.mosaic_stretch`: their samples pooled).

Errors are :class:`RasterError` (a ``ValueError``) with a message naming the image and the problem.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
from affine import Affine

from looking_glass.errors import EXIT_BAD_INPUT, LookingGlassError
from looking_glass.grid import EARTH_RADIUS_M

__all__ = [
    "DEFAULT_STRETCH_PERCENTILES",
    "READ_OPTIONS",
    "STRETCH_SAMPLE_PX",
    "RasterError",
    "RasterImage",
    "alpha_bands",
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
# Pixels per strip when a large image without overviews is sampled strip by strip (bounds memory).
STRIP_PX = 4_000_000
# GDAL configuration of every read of imagery: a capped block cache (MB). GDAL's default (5% of
# the machine's memory) fills with the blocks of a large file as it is read window by window.
READ_OPTIONS = {"GDAL_CACHEMAX": 128}


class RasterError(LookingGlassError, ValueError):
    """The raster or its reading options cannot be used (the message says which and why)."""

    exit_code = EXIT_BAD_INPUT


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

    Raises :class:`RasterError` when GDAL cannot read it, it is not a GeoTIFF, it has no CRS,
    its geotransform is missing or rotated, or its CRS is geographic while its bounds lie outside
    [-180, 180] x [-90, 90] degrees (e.g. UTM metres tagged EPSG:4326: the CRS tag is wrong).
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
    t = src.transform
    if t.b != 0 or t.d != 0 or t.a == 0 or t.e == 0 or t.is_identity:
        if t.is_identity and not (src.gcps[0] or src.rpcs):
            src.close()  # nothing to warp from: the file says nowhere where it lies
            raise RasterError(
                f"{label}: the GeoTIFF is not georeferenced (no geotransform, no ground control points): "
                "give it its place first (e.g. gdal_translate -a_srs <CRS> -a_ullr <ulx> <uly> <lrx> <lry> "
                "in.tif out.tif)"
            )
        how = "a rotated or sheared geotransform" if (t.b or t.d) else "ground control points (GCPs/RPCs), not a geotransform"
        src.close()
        raise RasterError(
            f"{label}: the GeoTIFF has {how}; only an axis-aligned geotransform (north-up or "
            "south-up) is read: warp it first (e.g. gdalwarp -t_srs <its CRS> in.tif out.tif)"
        )
    if src.crs is None:
        src.close()
        raise RasterError(f"{label}: the GeoTIFF has no CRS")
    check_geographic_bounds(src, label)
    return src


def check_geographic_bounds(src, label: str) -> None:
    """Raise :class:`RasterError` (closing the open dataset ``src``) when its CRS is geographic
    but its bounds are not degrees: outside [-180, 180] x [-90, 90], which PROJ cannot project
    (coordinates in metres tagged with a lon/lat CRS)."""
    if not src.crs.is_geographic:
        return
    left, bottom, right, top = src.bounds
    lons_ok = -180.0 <= min(left, right) and max(left, right) <= 180.0
    lats_ok = -90.0 <= min(bottom, top) and max(bottom, top) <= 90.0
    if lons_ok and lats_ok:
        return
    crs = src.crs.to_string()
    src.close()
    raise RasterError(
        f"{label}: bounds ({left:.6g}, {bottom:.6g}, {right:.6g}, {top:.6g}) are outside "
        f"[-180, 180] x [-90, 90] although its CRS ({crs}) is in degrees: the CRS tag looks wrong "
        "(coordinates in metres, e.g. UTM?); fix it, e.g. gdal_edit.py -a_srs EPSG:<code> file.tif"
    )


def select_bands(
    count: int, bands: Sequence[int] | None, label: str, alpha: Sequence[int] = ()
) -> tuple[int, int, int]:
    """The image's (R, G, B) band indices (1-based) for an image of ``count`` bands, of which
    ``alpha`` (1-based) are alpha bands (validity, never colour: see :func:`alpha_bands`).

    ``bands`` None: grey for 1 colour band, (1, 2, 3) for 3 colour bands (so grey+alpha and RGBA
    need no band list), else :class:`RasterError`. One band given is replicated to grey; an index
    above ``count`` is a :class:`RasterError`.
    """
    if bands is None:
        colour = [b for b in range(1, count + 1) if b not in set(alpha)]
        if len(colour) == 1:
            return (colour[0],) * 3
        if len(colour) == 3:
            return tuple(colour)  # type: ignore[return-value]
        raise RasterError(
            f"{label}: has {count} bands; say which to use as RGB with bands (e.g. (1, 2, 3) for the first three)"
        )
    for b in bands:
        if b > count:
            raise RasterError(f"{label}: band index {b} out of range (the image has {count} band(s))")
    return tuple(bands) * 3 if len(bands) == 1 else tuple(bands)  # type: ignore[return-value]


def alpha_bands(src) -> tuple[int, ...]:
    """The 1-based indices of the open dataset's alpha bands (colour interpretation alpha)."""
    from rasterio.enums import ColorInterp

    return tuple(i + 1 for i, c in enumerate(src.colorinterp) if c == ColorInterp.alpha)


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


def mercator_outline(src, k: int = 32, label: str = ""):
    """The footprint of the open dataset ``src`` in web mercator (EPSG:3857 metres) as a shapely
    polygon: its four edges, each densified to ``k`` points before reprojection.

    Raises :class:`RasterError` (naming ``label``) when PROJ cannot project the footprint.
    """
    import shapely
    from rasterio._err import CPLE_BaseError
    from rasterio.warp import transform

    edge = np.linspace(0.0, 1.0, k, endpoint=False)
    cols = np.concatenate([edge, np.ones(k), 1 - edge, np.zeros(k)]) * src.width
    rows = np.concatenate([np.zeros(k), edge, np.ones(k), 1 - edge]) * src.height
    xs, ys = src.transform @ (cols, rows)
    try:
        mx, my = transform(src.crs, "EPSG:3857", list(xs), list(ys))
    except CPLE_BaseError as exc:  # PROJ refuses the coordinates (e.g. a latitude beyond 90)
        raise RasterError(
            f"{label or 'the image'}: its footprint cannot be projected from {src.crs.to_string()} "
            f"to web mercator ({exc}); the CRS tag looks wrong"
        ) from None
    if not (np.isfinite(mx).all() and np.isfinite(my).all()):
        raise RasterError(f"{label or 'the image'}: its footprint cannot be projected to web mercator; the CRS tag looks wrong")
    return shapely.Polygon(np.column_stack([mx, my]))


class RasterImage:
    """An open GeoTIFF with its band selection and colour mapping.

    ``src`` is an open rasterio dataset (owned by the caller, who closes it), ``label`` names it,
    ``bands`` are the (R, G, B) 1-based indices from :func:`select_bands` and ``percentiles`` the
    stretch percentiles used when any selected band is not uint8. Attributes: ``unique`` (the
    distinct bands, sorted: what to read), ``pos`` (where each of R, G, B is in ``unique``),
    ``passes_through`` (every selected band is uint8) and ``stretch`` (None for uint8, else
    per-band (low, high) float64 arrays of shape (3,)). ``own_stretch`` False leaves ``stretch``
    None for the caller to set: a mosaic's images share one (:mod:`looking_glass.imagery.mosaic_stretch`).
    """

    def __init__(
        self, src, label: str, bands: tuple[int, int, int], percentiles: tuple[float, float], own_stretch: bool = True
    ):
        from rasterio.coords import BoundingBox
        from rasterio.transform import array_bounds

        self.src = src
        self.label = label
        # The north-up view of the file: a south-up file (positive y pixel size) is read with its
        # rows reversed (and a file stored east to west with its columns reversed).
        t = src.transform
        self.flip_rows, self.flip_cols = t.e > 0, t.a < 0
        self.transform = t
        if self.flip_rows:
            self.transform = self.transform @ Affine.translation(0, src.height) @ Affine.scale(1, -1)
        if self.flip_cols:
            self.transform = self.transform @ Affine.translation(src.width, 0) @ Affine.scale(-1, 1)
        west, south, east, north = array_bounds(src.height, src.width, self.transform)
        self.bounds = BoundingBox(west, south, east, north)
        self.bands = bands
        self.unique = sorted(set(bands))
        self.pos = [self.unique.index(b) for b in bands]
        # The alpha band (validity, read with the colour bands: ``indexes``, see ``split``).
        alphas = [b for b in alpha_bands(src) if b not in self.unique]
        self.alpha = alphas[0] if alphas else None
        self.indexes = self.unique + ([self.alpha] if self.alpha is not None else [])
        self.passes_through = all(np.dtype(src.dtypes[b - 1]) == np.uint8 for b in bands)
        self.stretch: tuple[np.ndarray, np.ndarray] | None = None
        if own_stretch and not self.passes_through:
            self.stretch = stretch_limits(*self.sample(), percentiles)

    def sample(self, max_side: int = STRETCH_SAMPLE_PX) -> tuple[np.ndarray, np.ndarray]:
        """The stretch sample: ((3, sh, sw) float32 R, G, B, (sh, sw) bool valid) of the whole
        file, in the file's own row/column order, decimated to at most ``max_side`` pixels a side
        (see the module's radiometry rule: an overview, else strips); sample pixel (i, j) stands
        for the (h / sh) x (w / sw) file pixels at (i * h / sh, j * w / sw)."""
        h, w = self.src.height, self.src.width
        f = max(1, math.ceil(max(h, w) / max_side))
        if f == 1 or self.src.overviews(self.indexes[0]):
            # Small, or GDAL answers the decimated read from an overview: one bounded read.
            shape = (max(1, h // f), max(1, w // f))
            raw = self.src.read(self.indexes, out_shape=(len(self.indexes), *shape), out_dtype="float32")
            data, alpha = self.split(raw)
            valid = self.valid_mask(data, self.src.dataset_mask(out_shape=shape), alpha)
            return data, valid
        return self._strided_sample(f)

    def _strided_sample(self, f: int) -> tuple[np.ndarray, np.ndarray]:
        """Every ``f``-th pixel of every ``f``-th row, read in full-width strips of whole blocks
        (at most about ``STRIP_PX`` pixels each): memory stays bounded by the strip, whatever the
        image's size, where GDAL's own decimated read would fill its block cache with the file."""
        from rasterio.windows import Window

        h, w = self.src.height, self.src.width
        block_h = self.src.block_shapes[0][0]
        rows = max(block_h, (STRIP_PX // w) // block_h * block_h)
        data = np.empty((3, math.ceil(h / f), math.ceil(w / f)), np.float32)
        valid = np.empty(data.shape[1:], bool)
        for r0 in range(0, h, rows):
            r1 = min(h, r0 + rows)
            first = -r0 % f  # first sampled row (a multiple of f) within the strip
            if first >= r1 - r0:
                continue
            win = Window(0, r0, w, r1 - r0)
            raw = self.src.read(self.indexes, window=win, out_dtype="float32")[:, first::f, ::f]
            part, alpha = self.split(raw)
            out = slice((r0 + first) // f, (r0 + first) // f + part.shape[1])
            data[:, out] = part
            valid[out] = self.valid_mask(part, self.src.dataset_mask(window=win)[first::f, ::f], alpha)
        return data, valid

    def split(self, raw: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Bands read as ``indexes`` -> (3, h, w) R, G, B and the (h, w) alpha band (None
        without one)."""
        alpha = raw[len(self.unique)] if self.alpha is not None else None
        return raw[self.pos], alpha

    @staticmethod
    def valid_mask(data: np.ndarray, dataset_mask: np.ndarray, alpha: np.ndarray | None = None) -> np.ndarray:
        """(h, w) bool: pixels of (3, h, w) ``data`` that hold data (see the module's validity
        rule); ``dataset_mask`` is GDAL's (h, w) mask, 0 where there is no data; ``alpha`` the
        alpha band, if any (GDAL's mask honours only 8- and 16-bit unsigned alpha bands; this
        rule honours any: 0 or less is empty)."""
        valid = (dataset_mask > 0) & np.isfinite(data).all(0) & (data != 0).any(0)
        if alpha is not None:
            valid &= alpha > 0
        return valid

    def read(self, row0: int, col0: int, h: int, w: int) -> np.ndarray:
        """(3, h, w) float32 of the selected bands at pixel offset (row0, col0) of the north-up
        view (``transform``); NaN = nodata, black or outside the image."""
        from rasterio.windows import Window

        out = np.full((3, h, w), np.nan, np.float32)
        r0, c0 = max(row0, 0), max(col0, 0)
        r1, c1 = min(row0 + h, self.src.height), min(col0 + w, self.src.width)
        if r1 <= r0 or c1 <= c0:
            return out
        fr0, fr1 = (self.src.height - r1, self.src.height - r0) if self.flip_rows else (r0, r1)
        fc0, fc1 = (self.src.width - c1, self.src.width - c0) if self.flip_cols else (c0, c1)
        win = Window(fc0, fr0, fc1 - fc0, fr1 - fr0)
        if self._blocks_absent(fr0, fc0, fr1, fc1):
            return out
        raw = self.src.read(self.indexes, window=win, out_dtype="float32")
        mask = self.src.dataset_mask(window=win)
        if self.flip_rows:
            raw, mask = raw[:, ::-1], mask[::-1]
        if self.flip_cols:
            raw, mask = raw[:, :, ::-1], mask[:, ::-1]
        data, alpha = self.split(np.ascontiguousarray(raw))
        valid = self.valid_mask(data, mask, alpha)
        data[:, ~valid] = np.nan
        out[:, r0 - row0 : r1 - row0, c0 - col0 : c1 - col0] = data
        return out

    def _blocks_absent(self, r0: int, c0: int, r1: int, c1: int) -> bool:
        """Whether no block under rows r0:r1, columns c0:c1 of the file is stored, in any band
        read (a sparse GeoTIFF: GDAL reads such blocks as nodata, or 0 = black, both empty), so
        the empty parts of a large sparse file are not read pixel by pixel."""
        bh, bw = self.src.block_shapes[0]
        for band in self.indexes:
            for by in range(r0 // bh, (r1 - 1) // bh + 1):
                for bx in range(c0 // bw, (c1 - 1) // bw + 1):
                    if self.src.get_tag_item(f"BLOCK_OFFSET_{bx}_{by}", "TIFF", bidx=band) is not None:
                        return False
        return True

    def to_uint8(self, data: np.ndarray) -> np.ndarray:
        """(3, h, w) float with NaN -> (h, w, 3) uint8 with 0 on nodata. Raises RuntimeError
        for non-uint8 data whose stretch was never set (``own_stretch=False`` and no
        mosaic's stretch given): its raw values would be clipped, not stretched."""
        if self.stretch is None and not self.passes_through:
            raise RuntimeError(f"{self.label}: no stretch set for non-uint8 imagery")
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
