"""A tile's prediction -> a label image of building instances.

Two heads, two rules:

- **binary** (sigmoid probability, (H, W) float in 0..1): a pixel is building where
  ``prob >= threshold``; instances are its 4-connected regions.
- **sdt** (signed distance to the building boundary in metres, positive inside, (H, W) float):
  a pixel is building where ``sdt > threshold_m``. Instances come from a marker-controlled
  watershed of ``-sdt``: markers are the h-maxima of the distance field (peaks that rise at least
  ``split_depth_m`` metres above the saddle joining them to a higher peak), so two buildings that
  touch across a neck (a narrower passage than either) are split along the neck, while a plain
  rectangle or an L-shape (whose distance ridge has no saddle) stays one building. Two buildings
  of the same width joined end to end have no neck and cannot be told apart from one long
  building by the distance field alone.

Labels are int32, 0 = background, 1..n instances, each instance one 4-connected region (so one
polygon per label when traced with 4-connectivity; see :mod:`.vectorize`).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from looking_glass.outlines.errors import OutlinesError

__all__ = ["HEADS", "binary_instances", "instances", "sdt_instances"]

HEADS = ("binary", "sdt")
_FOUR = ndimage.generate_binary_structure(2, 1)


def _check_2d(array, name: str) -> np.ndarray:
    a = np.asarray(array)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim != 2 or min(a.shape) == 0:
        raise OutlinesError(f"{name} must be a 2-D (H, W) array, got shape {np.shape(array)}")
    return a


def binary_instances(prob, threshold: float = 0.5) -> tuple[np.ndarray, int]:
    """(labels (H, W) int32, count): the 4-connected regions where ``prob >= threshold``.

    ``prob`` is an (H, W) or (H, W, 1) array of probabilities (or a bool mask)."""
    p = _check_2d(prob, "the binary head's probability")
    mask = p >= threshold if p.dtype != bool else p
    if not mask.any():  # no building (fields, water: many tiles of an AOI): labelling costs 0.2 ms
        return np.zeros(mask.shape, np.int32), 0
    labels, n = ndimage.label(mask, structure=_FOUR)
    return labels.astype(np.int32, copy=False), int(n)


def sdt_instances(sdt_m, threshold_m: float = 0.0, split_depth_m: float = 1.0) -> tuple[np.ndarray, int]:
    """(labels (H, W) int32, count): instances of the signed-distance head (metres, positive
    inside), split by a watershed from the distance peaks (see the module docstring).

    ``split_depth_m`` is the least depth (metres) of the saddle between two peaks for them to be
    two buildings; larger values split less. Every building region gets at least one instance.
    """
    from skimage.segmentation import watershed

    d = _check_2d(sdt_m, "the signed-distance head").astype(np.float64, copy=False)
    if split_depth_m <= 0:
        raise OutlinesError(f"split_depth_m must be positive, got {split_depth_m}")
    mask = d > threshold_m
    if not mask.any():
        return np.zeros(d.shape, np.int32), 0
    # Background is flattened to the threshold so its noise makes no peaks. The h-maxima: the
    # regional maxima of the field reconstructed (by dilation) from itself lowered by h. Each peak
    # deeper than h becomes one plateau there, the whole ridge of a slanted or pixelated building
    # included (its small ups and downs are below h), so a building gets one marker, not one per
    # ridge pixel.
    field = np.where(mask, d, threshold_m)
    peaks = _h_maxima(field, mask, threshold_m, split_depth_m)
    markers, n = ndimage.label(peaks, structure=np.ones((3, 3), bool))
    labels = watershed(-field, markers, mask=mask, connectivity=1)
    # A building region too shallow for any h-maximum (thinner than split_depth_m) or a marker
    # that is only diagonally connected leaves unlabelled or split pixels: give those regions
    # their own instances, then make every instance one 4-connected region.
    rest, n_rest = ndimage.label(mask & (labels == 0), structure=_FOUR)
    if n_rest:
        labels = np.where(rest > 0, rest + n, labels)
    return _four_connected(labels.astype(np.int32, copy=False))


def _h_maxima(field: np.ndarray, mask: np.ndarray, background: float, h: float) -> np.ndarray:
    """(H, W) bool: the h-maxima plateaus of ``field`` inside ``mask`` (see :func:`sdt_instances`).

    The reconstruction costs O(n log n) in the pixels it sees and most of a tile is background, so
    the bounding boxes of the building regions are packed side by side, one background pixel
    apart, into one small canvas (the whole tile when packing would not be smaller). Regions only
    ever meet through background, in the canvas as in the tile, so the plateaus are the same.
    """
    from skimage.morphology import local_maxima, reconstruction

    regions, _ = ndimage.label(mask, structure=_FOUR)
    boxes = [b for b in ndimage.find_objects(regions)]
    height = max(rs.stop - rs.start for rs, _ in boxes) + 2
    width = sum(cs.stop - cs.start + 1 for _, cs in boxes) + 1
    if height * width >= mask.size:
        domes = reconstruction(field - h, field, method="dilation")
        return local_maxima(domes, connectivity=2, allow_borders=True) & mask
    canvas = np.full((height, width), background, dtype=field.dtype)
    owner = np.zeros((height, width), bool)
    places = []
    x = 1
    for k, (rs, cs) in enumerate(boxes, start=1):
        own = regions[rs, cs] == k
        hh, ww = own.shape
        canvas[1:1 + hh, x:x + ww] = np.where(own, field[rs, cs], background)
        owner[1:1 + hh, x:x + ww] = own
        places.append((rs, cs, x, hh, ww))
        x += ww + 1
    domes = reconstruction(canvas - h, canvas, method="dilation")
    top = local_maxima(domes, connectivity=2, allow_borders=True) & owner
    peaks = np.zeros(mask.shape, bool)
    for rs, cs, x, hh, ww in places:
        peaks[rs, cs] |= top[1:1 + hh, x:x + ww]
    return peaks


def _four_connected(labels: np.ndarray) -> tuple[np.ndarray, int]:
    """Relabel so that every label is one 4-connected region (a watershed region may touch itself
    only diagonally): the 4-connected regions of equal label, numbered 1..n in raster order."""
    from skimage.measure import label

    out, n = label(labels, background=0, connectivity=1, return_num=True)
    return out.astype(np.int32, copy=False), int(n)


def instances(prediction, head: str, *, threshold: float | None = None, split_depth_m: float = 1.0):
    """(labels, count) of ``prediction`` for ``head`` ("binary" or "sdt"). ``threshold`` defaults
    to 0.5 (probability) for the binary head and 0.0 m for the sdt head."""
    if head == "binary":
        return binary_instances(prediction, 0.5 if threshold is None else threshold)
    if head == "sdt":
        return sdt_instances(prediction, 0.0 if threshold is None else threshold, split_depth_m)
    raise OutlinesError(f"unknown head {head!r}: use one of {', '.join(HEADS)}")
