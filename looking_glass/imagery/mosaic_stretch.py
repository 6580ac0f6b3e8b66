"""One radiometric stretch for a whole mosaic, whatever files the scene was cut into.

A single non-uint8 GeoTIFF is stretched by the 2nd and 98th percentiles of its own valid pixels
(:mod:`looking_glass.imagery.raster`). Doing that per image of a mosaic made the colours depend
on how the scene was cut into files: the same pixel got another value in each part (the SpaceNet
sample cut into two overlapping halves changed per-tile building areas by up to 26%), and a tile
on the seam got two stretches. A mosaic therefore gets one stretch, computed once when it is
opened and used for every tile (and for the map, which reads through the same source).

The rule (:func:`pooled_stretch_limits`): the per-band low/high percentiles of the valid pixels
of **all the images together**, as if they were one image:

* **Sampled, not read whole.** Each image gives its stretch sample (an overview or every n-th
  pixel, :meth:`looking_glass.imagery.raster.RasterImage.sample`) at most
  ``STRETCH_SAMPLE_PX / ceil(sqrt(n))`` pixels a side for n images, so the pooled sample is about
  as large as one image's, however many images there are.
* **Weighted by ground area.** Each sample pixel counts by the ground area it stands for (its
  file pixel's area in m2 times the decimation), so a large or fine image counts by its area,
  not as one vote per file, and a decimated sample counts as much as the pixels it skipped.
* **Each place once.** Where images overlap, a sample pixel is left out when its centre lies
  inside the footprint of an image before it in the mosaic's order (newest first: the one the
  mosaic draws there), so an overlap is not counted twice. Footprints, not pixels: where the
  earlier image has nodata inside its footprint the later image's pixels shown there are left
  out too (a small bias, only in such holes).
* **The percentile.** Weighted, by linear interpolation between the cumulative-weight midpoints
  of the sorted values, pinned at the smallest and largest: with equal weights exactly numpy's
  default percentile of one image (and then computed by it, :func:`stretch_limits`), so a scene
  cut on its pixel grid into parts gets exactly the stretch of the whole file.

All images must be uint8 (passed through, no stretch) or all of one other data type
(:class:`looking_glass.imagery.mosaic.MosaicTiles` refuses a mix: one stretch over uint8 and
16-bit values, or over integers and reflectance floats, fits neither).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from looking_glass.imagery.raster import DEFAULT_STRETCH_PERCENTILES, STRETCH_SAMPLE_PX, stretch_limits

__all__ = ["StretchSample", "member_sample_side", "pooled_stretch_limits", "weighted_percentiles"]

# Sample pixels whose centres are tested against an earlier footprint at a time (bounds memory).
_CHUNK_PX = 1_000_000


@dataclass(frozen=True)
class StretchSample:
    """One image's stretch sample: ``data`` (3, sh, sw) float32 and ``valid`` (sh, sw) bool in the
    file's own row/column order; ``transform`` (an affine.Affine) maps sample (col, row) to the
    image's ``crs`` (a rasterio CRS); ``bounds`` (left, bottom, right, top, left < right, bottom <
    top) is the image's footprint in that CRS; ``pixel_area_m2`` the ground area one sample pixel
    stands for; ``outline`` the footprint in web mercator (a shapely polygon, to skip images that
    do not meet)."""

    data: np.ndarray
    valid: np.ndarray
    transform: object
    crs: object
    bounds: tuple[float, float, float, float]
    pixel_area_m2: float
    outline: object


def member_sample_side(n_images: int) -> int:
    """The most sample pixels a side of each of ``n_images`` (>= 1) images: the pooled sample is
    then at most about one single image's (``STRETCH_SAMPLE_PX`` squared)."""
    return max(1, STRETCH_SAMPLE_PX // math.ceil(math.sqrt(n_images)))


def _covered(sample: StretchSample, earlier: StretchSample) -> np.ndarray:
    """(sh, sw) bool: sample pixels of ``sample`` whose centre lies strictly inside the footprint
    of ``earlier`` (centres reprojected to its CRS when the CRSs differ), in row chunks."""
    from rasterio.warp import transform

    sh, sw = sample.valid.shape
    out = np.zeros((sh, sw), bool)
    left, bottom, right, top = earlier.bounds
    cols = np.arange(sw) + 0.5
    step = max(1, _CHUNK_PX // sw)
    for r0 in range(0, sh, step):
        cc, rr = np.meshgrid(cols, np.arange(r0, min(sh, r0 + step)) + 0.5)
        xs, ys = sample.transform @ (cc, rr)
        if sample.crs != earlier.crs:
            tx, ty = transform(sample.crs, earlier.crs, xs.ravel(), ys.ravel())
            xs, ys = np.reshape(tx, cc.shape), np.reshape(ty, cc.shape)
        out[r0 : r0 + cc.shape[0]] = (xs > left) & (xs < right) & (ys > bottom) & (ys < top)
    return out


def weighted_percentiles(values: np.ndarray, weights: np.ndarray, percentiles: tuple[float, ...]) -> np.ndarray:
    """The ``percentiles`` (0-100) of 1-d ``values`` with positive ``weights`` (same length, at
    least one): sorted values are placed at their cumulative-weight midpoints rescaled so the
    smallest sits at 0 and the largest at 100, and interpolated linearly between them. With
    equal weights this is numpy's default (linear) percentile."""
    order = np.argsort(values, kind="stable")
    v, w = values[order].astype(np.float64), weights[order].astype(np.float64)
    if len(v) == 1:
        return np.full(len(percentiles), v[0])
    cum = np.cumsum(w)
    pos = (cum - w / 2 - w[0] / 2) / (cum[-1] - w[0] / 2 - w[-1] / 2)
    return np.interp(np.asarray(percentiles, np.float64) / 100.0, pos, v)


def pooled_stretch_limits(
    samples: list[StretchSample], percentiles: tuple[float, float] = DEFAULT_STRETCH_PERCENTILES
) -> tuple[np.ndarray, np.ndarray]:
    """Per-band (low, high) float64 arrays of shape (3,) of the stretch of a mosaic whose images'
    samples are ``samples``, in the mosaic's order (first drawn first); the module's rule. As
    :func:`~looking_glass.imagery.raster.stretch_limits`: (0, 1) where nothing is valid, and
    low + 1 for high where high would not be above low."""
    values, weights = [], []
    for i, sample in enumerate(samples):
        keep = sample.valid.copy()
        for earlier in samples[:i]:
            if keep.any() and earlier.outline.intersects(sample.outline):
                keep &= ~_covered(sample, earlier)
        values.append(sample.data[:, keep])
        weights.append(np.full(values[-1].shape[1], sample.pixel_area_m2))
    pooled, weight = np.concatenate(values, axis=1), np.concatenate(weights)
    if weight.size == 0 or (weight == weight[0]).all():  # one image's rule, computed by the same code
        return stretch_limits(pooled[:, None, :], np.ones((1, pooled.shape[1]), bool), percentiles)
    lo, hi = np.empty(3, np.float64), np.empty(3, np.float64)
    for band in range(3):
        lo[band], hi[band] = weighted_percentiles(pooled[band], weight, percentiles)
    return lo, np.where(hi <= lo, lo + 1.0, hi)
