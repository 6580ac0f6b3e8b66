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
    labels, n = ndimage.label(mask, structure=_FOUR)
    return labels.astype(np.int32, copy=False), int(n)


def sdt_instances(sdt_m, threshold_m: float = 0.0, split_depth_m: float = 1.0) -> tuple[np.ndarray, int]:
    """(labels (H, W) int32, count): instances of the signed-distance head (metres, positive
    inside), split by a watershed from the distance peaks (see the module docstring).

    ``split_depth_m`` is the least depth (metres) of the saddle between two peaks for them to be
    two buildings; larger values split less. Every building region gets at least one instance.
    """
    from skimage.morphology import local_maxima, reconstruction
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
    # Each building region is done in its own bounding box (plus a pixel of background): the
    # reconstruction costs O(n log n) in the pixels it sees, and most of a tile is background.
    field = np.where(mask, d, threshold_m)
    regions, _ = ndimage.label(mask, structure=_FOUR)
    peaks = np.zeros(mask.shape, bool)
    h, w = mask.shape
    for k, (rs, cs) in enumerate(ndimage.find_objects(regions), start=1):
        r0, r1, c0, c1 = max(rs.start - 1, 0), min(rs.stop + 1, h), max(cs.start - 1, 0), min(cs.stop + 1, w)
        sub = np.where(regions[r0:r1, c0:c1] == k, field[r0:r1, c0:c1], threshold_m)
        domes = reconstruction(sub - split_depth_m, sub, method="dilation")
        top = local_maxima(domes, connectivity=2, allow_borders=True) & (regions[r0:r1, c0:c1] == k)
        peaks[r0:r1, c0:c1] |= top
    markers, n = ndimage.label(peaks, structure=np.ones((3, 3), bool))
    labels = watershed(-field, markers, mask=mask, connectivity=1)
    # A building region too shallow for any h-maximum (thinner than split_depth_m) or a marker
    # that is only diagonally connected leaves unlabelled or split pixels: give those regions
    # their own instances, then make every instance one 4-connected region.
    rest, n_rest = ndimage.label(mask & (labels == 0), structure=_FOUR)
    if n_rest:
        labels = np.where(rest > 0, rest + n, labels)
    return _four_connected(labels.astype(np.int32, copy=False))


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
