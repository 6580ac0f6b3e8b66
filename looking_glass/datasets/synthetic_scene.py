"""One acquisition ("scene") of the synthetic world: sensor, sun, ground sample distance, season
and atmosphere, shared by a block of ``SCENE_TILES`` x ``SCENE_TILES`` neighbouring tiles.

Everything is drawn from a generator seeded with the scene's address, so a tile always renders
the same way, and neighbouring tiles of one scene share one sun (shadows point the same way), one
sensor and one palette. Reflectances are in 0..1 for four bands: red, green, blue, near infrared
(the panchromatic sensor sees mostly the red edge and NIR, where vegetation is bright).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from looking_glass.datasets.synthetic_noise import seed

SCENE_TILES = 8  # scene blocks of 8x8 tiles (synth-data's 4x4 clusters never straddle two)

# Roof materials: (R, G, B) reflectance and a relative weight (dark shingles are the commonest).
ROOF_MATERIALS = [
    ((0.045, 0.045, 0.05), 4.0),  # black / charcoal shingle
    ((0.08, 0.08, 0.085), 5.0),  # dark grey shingle
    ((0.13, 0.10, 0.08), 3.0),  # brown shingle
    ((0.19, 0.19, 0.20), 3.0),  # mid grey shingle / concrete tile
    ((0.30, 0.13, 0.09), 1.5),  # red tile
    ((0.36, 0.22, 0.14), 1.0),  # terracotta
    ((0.42, 0.43, 0.45), 1.5),  # light metal
    ((0.62, 0.62, 0.60), 1.0),  # white membrane (flat roofs)
    ((0.24, 0.23, 0.21), 1.5),  # gravel / tar and gravel
    ((0.10, 0.22, 0.16), 0.5),  # green metal
    ((0.11, 0.17, 0.30), 0.5),  # blue metal
]
ROOF_WEIGHTS = np.array([w for _, w in ROOF_MATERIALS]) / sum(w for _, w in ROOF_MATERIALS)

# Ground and vegetation (R, G, B, NIR).
LAWN = np.array([0.06, 0.10, 0.045, 0.42], np.float32)
DRY_GRASS = np.array([0.20, 0.17, 0.11, 0.30], np.float32)
SOILS = np.array([
    [0.22, 0.18, 0.13, 0.27],  # brown soil
    [0.30, 0.17, 0.11, 0.32],  # red clay
    [0.36, 0.33, 0.26, 0.40],  # sand
    [0.15, 0.13, 0.11, 0.20],  # dark soil
], np.float32)
ASPHALT = np.array([0.10, 0.10, 0.105, 0.11], np.float32)
CONCRETE = np.array([0.33, 0.32, 0.30, 0.34], np.float32)
LEAF_ON = np.array([0.045, 0.085, 0.035, 0.40], np.float32)
CONIFER = np.array([0.03, 0.055, 0.03, 0.24], np.float32)
LEAF_OFF = np.array([0.13, 0.11, 0.09, 0.19], np.float32)
AUTUMN = np.array([0.20, 0.11, 0.04, 0.33], np.float32)
POOL = np.array([0.10, 0.34, 0.42, 0.04], np.float32)


@dataclass(frozen=True)
class Scene:
    """Acquisition and landscape parameters of one scene (see the module docstring)."""

    key: tuple
    pan: bool  # panchromatic sensor (one band, shown as grey) instead of RGB
    pan_weights: tuple  # R, G, B, NIR weights of the panchromatic band
    gsd_scale: float  # metres per pixel relative to the tile's zoom-18 ground resolution
    sun_azimuth: float  # radians, image x right / y down, direction towards the sun
    sun_elevation: float  # radians
    ambient: float  # share of sky light (shadow brightness), 0..1
    season: float  # 0 leaf-on summer .. 1 leaf-off winter
    dryness: float  # lawns: 0 green .. 1 dry/dormant
    soil: int  # index into SOILS
    tree_cover: float  # forest share of the land
    tree_cell_m: float  # spacing of forest trees
    tree_height_m: float  # typical tree height
    conifer_share: float
    building_density: float  # multiplier of buildings per tile
    big_buildings: float  # probability that a building is commercial (large, flat)
    road_angle: float  # orientation of the road grid
    road_curve: float  # amplitude (px) of the roads' meanders
    block_px: float  # road spacing
    road_half_m: float  # road half-width
    asphalt: float  # road reflectance multiplier
    haze: float  # airlight share, 0..0.35
    blur: float  # sensor point-spread sigma in px
    noise: float  # relative read-noise level
    gain: float  # digital numbers per unit radiance (16-bit-like radiometry)
    stretch: tuple  # low/high percentiles of the per-tile linear stretch
    jpeg: int  # JPEG quality, 0 = not compressed
    ground_gain: float = 1.0  # lawns and soil brighter or darker (dormant grass is bright, often saturated)


def scene_key(z: int, x: int, y: int) -> tuple:
    """The scene block of tile z/x/y: (z, x // SCENE_TILES, y // SCENE_TILES)."""
    return (z, x // SCENE_TILES, y // SCENE_TILES)


def scene_for_tile(z: int, x: int, y: int) -> Scene:
    """The scene that tile z/x/y belongs to (a pure function of the scene block's address)."""
    key = scene_key(z, x, y)
    rng = np.random.default_rng(seed("scene", *key))
    pan = bool(rng.random() < 0.5)
    w = rng.dirichlet([3.0, 4.0, 2.0, 5.0])
    season = float(np.clip(rng.beta(0.7, 0.9), 0, 1))
    elevation = math.radians(rng.uniform(15, 70))  # winter scenes: long shadows
    jpeg = int(rng.integers(35, 95)) if rng.random() < 0.5 else 0
    return Scene(
        key=key,
        pan=pan,
        pan_weights=tuple(float(v) for v in w),
        gsd_scale=float(np.exp(rng.uniform(np.log(0.72), np.log(1.4)))),
        sun_azimuth=float(rng.uniform(0, 2 * math.pi)),
        sun_elevation=elevation,
        ambient=float(rng.uniform(0.18, 0.45)),
        season=season,
        dryness=float(np.clip(season * 0.7 + rng.uniform(-0.2, 0.5), 0, 1)),
        soil=int(rng.integers(len(SOILS))),
        tree_cover=float(rng.choice([rng.uniform(0.0, 0.25), rng.uniform(0.25, 0.65), rng.uniform(0.6, 0.9)])),
        tree_cell_m=float(rng.uniform(4.5, 12.0)),
        tree_height_m=float(rng.uniform(8, 22)),
        conifer_share=float(rng.uniform(0, 0.6) ** 1.5),
        building_density=float(rng.uniform(0.3, 1.6)),
        big_buildings=float(rng.uniform(0.0, 0.25) ** 1.5),
        road_angle=float(rng.uniform(0, math.pi / 2) if rng.random() < 0.6 else 0.0),
        road_curve=float(rng.uniform(0, 60) if rng.random() < 0.5 else 0.0),
        block_px=float(rng.uniform(260, 520)),
        road_half_m=float(rng.uniform(2.5, 5.5)),
        asphalt=float(rng.uniform(0.6, 2.2)),
        haze=float(rng.uniform(0, 0.35) ** 1.3),
        blur=float(rng.uniform(0.3, 1.4)),
        noise=float(rng.uniform(0.3, 2.0)),
        gain=float(rng.uniform(900, 6000)),
        stretch=(float(rng.uniform(0.3, 3.0)), float(rng.uniform(93.0, 99.8))),
        jpeg=jpeg,
        ground_gain=float(np.exp(rng.uniform(np.log(0.8), np.log(2.4)))),
    )
