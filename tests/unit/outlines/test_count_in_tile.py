"""count_in_tile weighs only the instance pixels (issue 14: the worker's building counts cost
0.6 ms a tile, most of it a whole-tile weighted bincount); its areas, and so its counts, are
those of the whole-tile rule to the last bit, on the synthetic world's building masks and on
random ones."""

import numpy as np
import pytest

from looking_glass.datasets.synthetic import render_tile
from looking_glass.grid import pixel_row_areas_m2
from looking_glass.outlines.instances import binary_instances
from looking_glass.outlines.vectorize import count_in_tile

TILES = [(18, 77000 + i % 8, 99000 + i // 8) for i in range(24)]


def whole_tile_areas(lab: np.ndarray, z: int, x: int, y: int) -> np.ndarray:
    """Each label's ground area (m2) as count_in_tile computed it before: a bincount of the whole
    tile, every pixel weighted with its row's area."""
    rows = np.broadcast_to(pixel_row_areas_m2(x, y, z, size=lab.shape[0])[:, None], lab.shape)
    return np.bincount(lab.ravel(), weights=rows.ravel(), minlength=int(lab.max()) + 1)


def reference_count(lab: np.ndarray, z: int, x: int, y: int, min_area_m2: float) -> int:
    """The count by the rule of count_in_tile's docstring, from whole_tile_areas."""
    if not lab.any():
        return 0
    keep = whole_tile_areas(lab, z, x, y) >= min_area_m2
    keep[lab[-1, :]] = True
    keep[lab[:, -1]] = True
    keep[lab[0, :]] = False
    keep[lab[:, 0]] = False
    keep[0] = False
    return int(np.count_nonzero(keep))


def masks():
    for z, x, y in TILES:
        yield (z, x, y), render_tile(z, x, y)[1].astype(bool)
    rng = np.random.default_rng(14)
    for i in range(8):  # speckled and blobby: many instances, on every edge
        noise = rng.random((256, 256)) < (0.05 + 0.1 * i)
        yield (18, 12345 + i, 23456), noise


@pytest.mark.parametrize("threshold", ["every instance's own area", "5 m2"])
def test_counts_equal_the_whole_tile_rule_even_at_each_area_threshold(threshold):
    checked = 0
    for (z, x, y), mask in masks():
        lab, n = binary_instances(mask)
        if threshold == "5 m2":
            assert count_in_tile(lab, z, x, y, 5.0) == reference_count(lab, z, x, y, 5.0)
            continue
        # A threshold equal to an instance's area keeps it only if the sum is the same to the
        # last bit; one ulp above drops it.
        for area in np.unique(whole_tile_areas(lab, z, x, y)[1:])[:40]:
            for t in (area, np.nextafter(area, np.inf)):
                assert count_in_tile(lab, z, x, y, float(t)) == reference_count(lab, z, x, y, float(t)), (z, x, y, t)
                checked += 1
    assert threshold == "5 m2" or checked > 200
    assert count_in_tile(np.zeros((256, 256), np.int32), 18, 1, 2) == 0
