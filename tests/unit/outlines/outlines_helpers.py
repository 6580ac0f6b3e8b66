"""Shared helpers of the outlines tests: mosaics of tiles cut from one big hand-made mask."""
# Imported by name (pytest puts this test folder on sys.path); not a conftest, so no clash with tests/conftest.py.

from __future__ import annotations

import numpy as np

from looking_glass.grid import TILE_SIZE

# A zoom-18 block near the equator (about 26 E, 1.5 N): one pixel is about 0.6 m.
X0, Y0 = 150_000, 130_000


def cut_tiles(mosaic: np.ndarray, x0: int = X0, y0: int = Y0, z: int = 18, size: int = TILE_SIZE, skip=()):
    """Row-major ((z, x, y), tile array) pairs of a mosaic whose shape is a multiple of ``size``."""
    rows, cols = mosaic.shape[0] // size, mosaic.shape[1] // size
    out = []
    for j in range(rows):
        for i in range(cols):
            if (i, j) in skip:
                continue
            out.append(((z, x0 + i, y0 + j), mosaic[j * size:(j + 1) * size, i * size:(i + 1) * size]))
    return out


def random_rectangles(shape, count: int, rng: np.random.Generator, lo: int = 8, hi: int = 60, gap: int = 2):
    """A bool mosaic of up to ``count`` axis-aligned rectangles that never touch (``gap`` px
    apart), and the list of their (r0, r1, c0, c1)."""
    mask = np.zeros(shape, bool)
    taken = np.zeros(shape, bool)
    boxes = []
    for _ in range(count * 4):
        if len(boxes) == count:
            break
        h, w = rng.integers(lo, hi, size=2)
        r0, c0 = rng.integers(0, shape[0] - h), rng.integers(0, shape[1] - w)
        if taken[max(r0 - gap, 0):r0 + h + gap, max(c0 - gap, 0):c0 + w + gap].any():
            continue
        mask[r0:r0 + h, c0:c0 + w] = True
        taken[r0:r0 + h, c0:c0 + w] = True
        boxes.append((int(r0), int(r0 + h), int(c0), int(c0 + w)))
    return mask, boxes
