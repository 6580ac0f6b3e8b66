"""Trees of the synthetic world: forests, tree rows and single yard trees, of many shapes.

Trees stand on a jittered lattice of world-pixel cells (so they continue across tile edges); a cell
holds a tree with a probability that follows a slow forest-density field. Crowns are domes
(broadleaf) or cones (conifers) with ragged outlines, bumpy tops (texture under the sun) and, in
leaf-off seasons, holes that show the ground. A crown only overhangs roofs: no tree stands on a
road or within a building's clearance, but crowns from outside reach over roofs (partial
occlusion; the truth mask still holds the whole footprint).
"""

from __future__ import annotations

import numpy as np

from looking_glass.datasets.synthetic_buildings import Layers
from looking_glass.datasets.synthetic_noise import lattice, noise_grid, value_noise
from looking_glass.datasets.synthetic_scene import AUTUMN, CONIFER, LEAF_OFF, LEAF_ON, Scene


def _tree_colours(scene: Scene) -> np.ndarray:
    """Albedo of broadleaf trees in this scene's season, and of conifers: (2, 4)."""
    s = scene.season
    broad = LEAF_ON * (1 - s) + LEAF_OFF * s
    if 0.3 < s < 0.6:  # autumn colours
        broad = broad * 0.6 + AUTUMN * 0.4
    return np.stack([broad, CONIFER]).astype(np.float32)


def add_trees(scene: Scene, layers: Layers, gx0: int, gy0: int) -> np.ndarray:
    """Grow the trees of the window whose top-left world pixel is (gx0, gy0); returns the canopy mask."""
    size = layers.height.shape[0]
    cell = scene.tree_cell_m / layers.m_per_px
    f = (np.arange(size) + 0.5) / cell - 0.5
    kx0 = np.floor(f + gx0 / cell).astype(np.int64)
    ky0 = np.floor(f + gy0 / cell).astype(np.int64)
    kx = np.arange(kx0[0], kx0[-1] + 2)
    ky = np.arange(ky0[0], ky0[-1] + 2)
    KX, KY = np.meshgrid(kx, ky)
    salt = int(scene.key[0]) * 1000 + 77

    jx = (lattice(KX, KY, salt + 1) - 0.5) * 0.6
    jy = (lattice(KX, KY, salt + 2) - 0.5) * 0.6
    X = (KX + 0.5 + jx) * cell  # world pixels
    Y = (KY + 0.5 + jy) * cell
    forest = value_noise(X, Y, 520.0, salt + 3) * 0.7 + value_noise(X, Y, 130.0, salt + 4) * 0.3
    threshold = 0.5 + (0.5 - scene.tree_cover) * 0.6
    p_forest = np.clip((forest - threshold) / 0.1, 0, 1) * 0.95
    p_yard = 0.05 + 0.12 * scene.tree_cover
    alive = lattice(KX, KY, salt + 5) < np.maximum(p_forest, p_yard)
    wx, wy = np.floor(X - gx0).astype(np.int64), np.floor(Y - gy0).astype(np.int64)
    inside = (wx >= 0) & (wx < size) & (wy >= 0) & (wy < size)
    alive[inside] &= ~layers.clear[wy[inside], wx[inside]]
    conifer = lattice(KX, KY, salt + 6) < scene.conifer_share
    radius = (0.4 + 0.55 * lattice(KX, KY, salt + 7)) * cell  # big crowns overlap: closed canopy * np.where(conifer, 0.8, 1.0)
    height = scene.tree_height_m * (0.6 + 0.7 * lattice(KX, KY, salt + 8)) * np.where(conifer, 1.2, 1.0)
    shade = 0.75 + 0.55 * lattice(KX, KY, salt + 9)
    attrs = np.stack([X - gx0, Y - gy0, radius, height * alive, conifer, shade]).astype(np.float32)  # (6, ny, nx)

    ragged = noise_grid(gx0, gy0, size, size, max(cell * 0.35, 1.5), salt + 10)
    bumps = noise_grid(gx0, gy0, size, size, max(cell * 0.15, 1.2), salt + 11)
    # twigs and branches at about 0.7 m: leaf-off crowns are a fine, high-contrast texture, which is
    # what separates real winter forest from smooth bright roofs
    twigs = noise_grid(gx0, gy0, size, size, max(0.7 / layers.m_per_px, 1.0), salt + 12)
    px = (np.arange(size, dtype=np.float32) + 0.5)[None, :]
    py = (np.arange(size, dtype=np.float32) + 0.5)[:, None]
    top = np.zeros((size, size), np.float32)
    kind = np.zeros((size, size), np.float32)
    bright = np.ones((size, size), np.float32)
    for dy in (0, 1):
        for dx in (0, 1):
            a = attrs.take(ky0 + dy - ky[0], axis=1).take(kx0 + dx - kx[0], axis=2)
            r = a[2] * (0.8 + 0.4 * ragged)
            d2 = ((px - a[0]) ** 2 + (py - a[1]) ** 2) / (r * r)
            cone = a[4] > 0.5
            inv = np.sqrt(np.maximum(1 - d2, 0))
            prof = np.where(cone, 1 - np.sqrt(np.minimum(d2, 1)), inv)
            h = a[3] * (0.55 + 0.45 * prof) * (d2 < 1)
            better = h > top
            np.copyto(top, h, where=better)
            np.copyto(kind, a[4], where=better)
            np.copyto(bright, a[5], where=better)
    canopy = top > 0
    top = top + canopy * (bumps - 0.5) * (1.0 + 2.0 * top / max(scene.tree_height_m, 1.0))
    if scene.season > 0.5:  # leaf-off broadleaf crowns: see-through gaps between branches
        holes = (bumps < (scene.season - 0.5) * 0.9) & (kind < 0.5)
        canopy &= ~holes
    over = canopy & (top > layers.height)
    colours = _tree_colours(scene)
    leafless = (kind < 0.5) * max(scene.season - 0.4, 0.0) / 0.6  # 0 in leaf, 1 fully bare
    texture = (0.7 + 0.6 * bumps) * (1 + (0.25 + 0.75 * leafless) * (twigs - 0.5) * 1.6)
    tree_albedo = colours[kind.astype(np.int64)] * (bright * texture)[..., None]
    layers.albedo[over] = tree_albedo[over]
    layers.height[over] = top[over]
    layers.base[over] = 0.45 * top[over]  # crowns stand on trunks: their shadows are blobs, not bars
    return over
