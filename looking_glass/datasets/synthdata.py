"""``looking-glass synth-data``: a training set from the synthetic worlds, in the prepare format.

By default the set is ``mixed``: 30% of the 4x4 clusters come from the demo world (so a model
stays good at what the demo and ``evaluate --synthetic`` show) and the rest from the randomised
world (so that it has a chance on real imagery); see ``looking_glass.datasets.synthetic``.

Tiles are drawn from a seeded random set of zoom-18 addresses in clusters of 4x4 neighbouring
tiles (so the block split has whole neighbourhoods to keep apart), far from the demo's sample AOI
(which is near 30.06 E, 1.95 S) so that the demo is never scored on tiles it was trained on.
"""

from __future__ import annotations

import numpy as np

from looking_glass.datasets.chips import Chip, write_dataset
from looking_glass.datasets.labels import signed_distance_m
from looking_glass.datasets.split import TILES_SPLIT_SOURCE, block_split
from looking_glass.datasets.synthetic import render_world_tile
from looking_glass.grid import ZOOM, ground_resolution_m, tile_bounds, tile_center_lat

CLUSTER = 4
# Training tiles come from this window of zoom-18 columns/rows (around 43 W..2 W, 52..36 N).
X_RANGE = (100_000, 130_000)
Y_RANGE = (85_000, 100_000)


def synthetic_tiles(count: int, seed: int) -> list[tuple[int, int, int]]:
    """``count`` distinct zoom-18 tiles (x, y, z) in whole 4x4 clusters (the last one cut short),
    drawn with ``seed`` from the window ``X_RANGE`` x ``Y_RANGE``; the same seed gives the same tiles."""
    rng = np.random.default_rng(seed)
    tiles: list[tuple[int, int, int]] = []
    seen = set()
    while len(tiles) < count:
        x0 = int(rng.integers(*X_RANGE)) // CLUSTER * CLUSTER
        y0 = int(rng.integers(*Y_RANGE)) // CLUSTER * CLUSTER
        for dy in range(CLUSTER):
            for dx in range(CLUSTER):
                t = (x0 + dx, y0 + dy, ZOOM)
                if t not in seen and len(tiles) < count:
                    seen.add(t)
                    tiles.append(t)
    return tiles


WORLDS = ("mixed", "randomised", "demo")
DEMO_SHARE = 0.3  # share of 4x4 clusters from the demo world in the "mixed" training set


def cluster_world(world: str, x: int, y: int, seed: int) -> str:
    """The world a tile is rendered from: ``mixed`` picks per 4x4 cluster (hashed with the seed)
    the demo world for ``DEMO_SHARE`` of them and the randomised world for the rest."""
    if world not in WORLDS:
        raise ValueError(f"world must be one of {WORLDS}, got {world!r}")
    if world != "mixed":
        return world
    rng = np.random.default_rng([seed, x // CLUSTER, y // CLUSTER, 12])
    return "demo" if rng.random() < DEMO_SHARE else "randomised"


def synthetic_chips(count: int, seed: int, sdt_clip_m: float = 10.0, val_fraction: float = 0.2,
                    world: str = "mixed"):
    """Yield a :class:`Chip` for each of :func:`synthetic_tiles`: the rendered image (256, 256, 3)
    uint8, its building mask (0/1 uint8), the signed distance to the outlines in metres (clipped to
    ``sdt_clip_m``), the tile's EPSG:4326 bounds and ground resolution, and its train/val split
    (per 4x4 cluster, ``val_fraction`` of them to validation). ``world``: one of :data:`WORLDS`."""
    for x, y, z in synthetic_tiles(count, seed):
        tile_world = cluster_world(world, x, y, seed)
        image, truth = render_world_tile(tile_world, z, x, y)
        mask = truth.astype(np.uint8)
        res = ground_resolution_m(tile_center_lat(x, y, z), z)
        yield Chip(
            id=f"synthetic_{z}_{x}_{y}",
            split=block_split(TILES_SPLIT_SOURCE, y, x, split_block=CLUSTER, val_fraction=val_fraction, seed=seed),
            image=image,
            mask=mask,
            sdt=signed_distance_m(mask, res, sdt_clip_m),
            source="synthetic",
            crs="EPSG:4326",
            bounds=tile_bounds(x, y, z),
            pixel_size_m=(res, res),
            meta={"tile": [z, x, y], "world": tile_world},
        )


def write_synthetic_dataset(out_dir, tiles: int, seed: int = 0, overwrite: bool = False, sdt_clip_m: float = 10.0,
                            world: str = "mixed") -> dict:
    """Write a ``synth-data`` set of ``tiles`` chips (:func:`synthetic_chips`) to ``out_dir`` in the
    prepare format; returns its manifest. Raises ``ValueError`` for fewer than 1 tile or an unknown
    ``world``; ``PrepareError`` for an ``out_dir`` that is not empty (without ``overwrite``, or not a dataset)."""
    if tiles < 1:
        raise ValueError("tiles must be at least 1")
    cluster_world(world, 0, 0, seed)  # checks the name
    return write_dataset(
        out_dir,
        synthetic_chips(tiles, seed, sdt_clip_m, world=world),
        overwrite=overwrite,
        mode="synthetic",
        seed=seed,
        sdt_clip_m=sdt_clip_m,
        split_rule=f"clusters of {CLUSTER}x{CLUSTER} tiles hashed with the seed to train/validation (20%)"
        + (f"; world {world}" if world != "mixed" else
           f"; world mixed: {DEMO_SHARE:.0%} of the clusters from the demo world, the rest randomised"),
    )
