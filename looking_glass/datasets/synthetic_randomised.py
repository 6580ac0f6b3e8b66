"""The randomised synthetic world (domain randomisation): deterministic aerial-looking tiles of
varied acquisitions and landscapes, with their exact building masks; the training world of model v3.

Any z/x/y renders the same way every time (everything is seeded from the tile address, the scene
block's address or world-pixel coordinates). It is randomised on purpose, so that a model trained
on it alone has a chance on real imagery:

- ``synthetic_scene``: per block of 8x8 tiles one acquisition: RGB or panchromatic sensor, ground
  sample distance around the zoom-18 resolution, one sun, season, atmosphere, palette;
- ``synthetic_ground``: lawns, dry grass, bare soil, a meandering road grid with sidewalks
  (continuous across tiles);
- ``synthetic_buildings``: houses and commercial blocks with gable, hip and flat roofs of many
  materials (dark ones included), driveways, cars, pools, fences, parking lots;
- ``synthetic_trees``: forests and yard trees of many shapes (continuous across tiles), whose
  crowns may overhang roofs;
- ``synthetic_sensor``: shading and shadows from the one sun, haze, blur, noise, 16-bit-like
  radiometry through a percentile stretch, JPEG artefacts.

The truth mask is the building footprints, including roof parts hidden under tree crowns (as in
SpaceNet's labels).
"""

from __future__ import annotations

import numpy as np

from looking_glass.datasets.synthetic_buildings import Layers, place_buildings
from looking_glass.datasets.synthetic_ground import ground_albedo
from looking_glass.datasets.synthetic_noise import noise_grid, seed, value_noise
from looking_glass.datasets.synthetic_scene import Scene, scene_for_tile
from looking_glass.datasets.synthetic_sensor import expose, illuminate
from looking_glass.datasets.synthetic_trees import add_trees
from looking_glass.grid import TILE_SIZE, ground_resolution_m, tile_center_lat

WORLD_VERSION = 4  # 4: bigger, overlapping crowns, twig texture on leaf-off trees, suns down to 15 deg
# 3: brighter, often saturated lawns (scene ground_gain), stretch up to 93-99.8%
PAD = 32  # pixels rendered around the tile so that shadows and crowns enter it from outside

__all__ = ["WORLD_VERSION", "Scene", "build_layers", "render_tile", "scene_for_tile"]


def metres_per_pixel(scene: Scene, z: int, x: int, y: int, size: int = TILE_SIZE) -> float:
    """The ground size of one pixel of this tile in the scene's world (zoom-18 resolution x GSD)."""
    return ground_resolution_m(tile_center_lat(x, y, z), z) * TILE_SIZE / size * scene.gsd_scale


def build_layers(z: int, x: int, y: int, size: int = TILE_SIZE) -> tuple[Scene, Layers]:
    """The scene of tile z/x/y and its height field, albedo and truth (before light and sensor)."""
    scene = scene_for_tile(z, x, y)
    m = metres_per_pixel(scene, z, x, y, size)
    window = size + 2 * PAD
    gx0, gy0 = x * size - PAD, y * size - PAD
    albedo, road, sidewalk = ground_albedo(scene, gx0, gy0, window, m)
    layers = Layers(
        height=np.zeros((window, window), np.float32),
        albedo=albedo,
        ground=~road,
        blocked=road | sidewalk,
        clear=road | sidewalk,
        truth=np.zeros((size, size), bool),
        pad=PAD,
        m_per_px=m,
    )
    rng = np.random.default_rng(seed(z, x, y))
    centre = np.array([x * size + size / 2.0])
    density = float(value_noise(centre, np.array([y * size + size / 2.0]), 900.0, 15)[0])
    place_buildings(scene, layers, rng, density)
    add_trees(scene, layers, gx0, gy0)
    grain = noise_grid(gx0, gy0, window, window, 1.3, 17)
    layers.albedo *= (0.9 + 0.2 * grain)[..., None]
    return scene, layers


def render_tile(z: int, x: int, y: int, size: int = TILE_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Image (size, size, 3) uint8 (grey in all three bands for panchromatic scenes) and the exact
    building mask (size, size) bool."""
    scene, layers = build_layers(z, x, y, size)
    radiance = illuminate(layers.height, layers.albedo, scene, layers.m_per_px, 2 * PAD, layers.base)
    radiance = radiance[PAD:PAD + size, PAD:PAD + size]
    image = expose(radiance, scene, np.random.default_rng(seed("sensor", z, x, y)))
    return image, layers.truth.copy()
