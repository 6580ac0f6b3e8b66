"""The ground of the synthetic world: lawns, dry grass and bare soil, and a meandering road grid
with sidewalks. All of it is a function of world-pixel coordinates and the scene, so it continues
across the tiles of a scene.
"""

from __future__ import annotations

import math

import numpy as np

from looking_glass.datasets.synthetic_noise import fbm_grid, lattice, noise_grid
from looking_glass.datasets.synthetic_scene import ASPHALT, CONCRETE, DRY_GRASS, LAWN, SOILS, Scene


def road_mask(scene: Scene, gx0: float, gy0: float, size: int, m_per_px: float) -> tuple[np.ndarray, np.ndarray]:
    """(road, sidewalk) boolean masks of the window [gx0, gx0+size) x [gy0, gy0+size).

    Roads are level lines of rotated, noise-warped world coordinates, one per block of
    ``scene.block_px`` (a hashed share of them missing), so they meander and continue across tiles.
    """
    warp_u = (noise_grid(gx0, gy0, size, size, 420.0, 31) - 0.5) * 2 * scene.road_curve
    warp_v = (noise_grid(gx0, gy0, size, size, 420.0, 32) - 0.5) * 2 * scene.road_curve
    gx = (gx0 + 0.5 + np.arange(size, dtype=np.float64))[None, :]
    gy = (gy0 + 0.5 + np.arange(size, dtype=np.float64))[:, None]
    warp_u, warp_v = warp_u.astype(np.float64), warp_v.astype(np.float64)
    c, s = math.cos(scene.road_angle), math.sin(scene.road_angle)
    half = scene.road_half_m / m_per_px
    walk = 1.6 / m_per_px
    has_walk = lattice(np.array(scene.key[1]), np.array(scene.key[2]), 33) < 0.5
    road = np.zeros((size, size), bool)
    sidewalk = np.zeros((size, size), bool)
    for axis, coord in enumerate((gx * c + gy * s + warp_u, -gx * s + gy * c + warp_v)):
        k = np.round(coord / scene.block_px).astype(np.int64)
        ks = np.arange(k.min(), k.max() + 1)  # the few road lines of the window
        centre = ks * scene.block_px + (lattice(ks, np.full_like(ks, axis), 34) - 0.5) * 0.2 * scene.block_px
        present = lattice(ks, np.full_like(ks, axis), 35) > 0.3
        k -= ks[0]
        exists = present[k]
        d = np.abs(coord - centre[k])
        road |= exists & (d < half)
        if has_walk:
            sidewalk |= exists & (d >= half + 0.8 / m_per_px) & (d < half + 0.8 / m_per_px + walk)
    return road, sidewalk & ~road


def ground_albedo(scene: Scene, gx0: float, gy0: float, size: int, m_per_px: float):
    """(albedo (size, size, 4) float32, road mask, sidewalk mask) of the bare ground of a window."""
    cover = fbm_grid(gx0, gy0, size, size, 220.0, 41, octaves=3)
    local_dry = noise_grid(gx0, gy0, size, size, 70.0, 42)
    fine = noise_grid(gx0, gy0, size, size, 2.5, 43)
    mid = noise_grid(gx0, gy0, size, size, 9.0, 44)

    dry = np.clip(scene.dryness + (local_dry - 0.5) * 0.6, 0, 1)[..., None]
    grass = LAWN * (1 - dry) + DRY_GRASS * dry
    soil = SOILS[scene.soil]
    soil_share = np.clip((0.36 - cover) * 6.0, 0, 1)[..., None]  # bare patches where cover is low
    albedo = grass * (1 - soil_share) + soil * soil_share
    albedo = np.minimum(albedo * (scene.ground_gain * (0.8 + 0.25 * mid + 0.2 * fine))[..., None], 0.9)

    road, sidewalk = road_mask(scene, gx0, gy0, size, m_per_px)
    asphalt = ASPHALT * scene.asphalt
    albedo[road] = asphalt * (0.88 + 0.24 * fine[road])[:, None]
    albedo[sidewalk] = CONCRETE * (0.9 + 0.2 * fine[sidewalk])[:, None]
    return albedo.astype(np.float32), road, sidewalk
