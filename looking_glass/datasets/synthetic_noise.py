"""Deterministic randomness for the synthetic world: seeds from addresses, hashed lattices and
smooth value noise over world-pixel coordinates (so that fields continue across tile edges).
"""

from __future__ import annotations

import hashlib

import numpy as np


def seed(*parts) -> int:
    """A 64-bit seed from any printable parts (tile address, salt, ...)."""
    digest = hashlib.blake2b(",".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def lattice(ix: np.ndarray, iy: np.ndarray, salt: int) -> np.ndarray:
    """Hash integer lattice points to [0, 1) (vectorised splitmix-style mixing)."""
    with np.errstate(over="ignore"):
        return _mix(ix, iy, salt)


def _mix(ix, iy, salt: int) -> np.ndarray:
    h = (np.asarray(ix).astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)) ^ (
        np.asarray(iy).astype(np.uint64) * np.uint64(0xC2B2AE3D27D4EB4F)
    )
    h ^= np.uint64(salt & 0xFFFFFFFFFFFFFFFF)
    h ^= h >> np.uint64(31)
    h *= np.uint64(0xBF58476D1CE4E5B9)
    h ^= h >> np.uint64(29)
    return (h >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def value_noise(gx: np.ndarray, gy: np.ndarray, cell: float, salt: int) -> np.ndarray:
    """Smooth noise in [0, 1) at arbitrary world-pixel coordinates (continuous across tiles)."""
    fx, fy = gx / cell, gy / cell
    ix, iy = np.floor(fx).astype(np.int64), np.floor(fy).astype(np.int64)
    tx, ty = fx - ix, fy - iy
    tx, ty = tx * tx * (3 - 2 * tx), ty * ty * (3 - 2 * ty)
    v00 = lattice(ix, iy, salt)
    v10 = lattice(ix + 1, iy, salt)
    v01 = lattice(ix, iy + 1, salt)
    v11 = lattice(ix + 1, iy + 1, salt)
    return (v00 * (1 - tx) + v10 * tx) * (1 - ty) + (v01 * (1 - tx) + v11 * tx) * ty


def _axis(start: float, length: int, cell: float):
    f = (start + 0.5 + np.arange(length)) / cell  # pixel centres
    i = np.floor(f).astype(np.int64)
    t = f - i
    return i, (t * t * (3 - 2 * t)).astype(np.float32)


def noise_grid(x0: float, y0: float, w: int, h: int, cell: float, salt: int) -> np.ndarray:
    """Value noise in [0, 1) on the pixel grid [x0, x0+w) x [y0, y0+h) of world pixels, float32.

    The same field as sampling value noise at the pixel centres, but separable: the lattice is hashed
    only at the few cells the window touches, so a 320 px window costs well under a millisecond.
    """
    ix, tx = _axis(x0, w, cell)
    iy, ty = _axis(y0, h, cell)
    cx = np.arange(ix[0], ix[-1] + 2)
    cy = np.arange(iy[0], iy[-1] + 2)
    grid = lattice(cx[None, :], cy[:, None], salt).astype(np.float32)  # (ny, nx)
    a = ix - cx[0]
    along_x = grid[:, a] * (1 - tx) + grid[:, a + 1] * tx  # (ny, w)
    b = iy - cy[0]
    return along_x[b] * (1 - ty)[:, None] + along_x[b + 1] * ty[:, None]


def fbm_grid(x0: float, y0: float, w: int, h: int, cell: float, salt: int, octaves: int = 3) -> np.ndarray:
    """Fractal sum of ``octaves`` value-noise grids (cell, cell/2, ...), normalised to [0, 1)."""
    total = np.zeros((h, w), np.float32)
    weight, norm = 1.0, 0.0
    for o in range(octaves):
        total += weight * noise_grid(x0, y0, w, h, cell / 2**o, salt + 101 * o)
        norm += weight
        weight *= 0.5
    return total / norm
