"""The demo world (the first, "classic" synthetic world): plain RGB tiles with their exact masks.

What ``looking_glass.datasets.synthetic.render_tile`` renders for the tile server, the demo,
``evaluate --synthetic`` and the tests. Model version 2 was trained on it alone.

Any z/x/y renders the same way every time (everything is seeded from the tile address or from
world-pixel coordinates), so the demo and the tests know the true building area of every tile.
Roads and land cover are functions of world-pixel coordinates and so continue across tile edges;
buildings are generated per tile and kept inside it, which makes the per-tile truth exact.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from looking_glass.datasets.synthetic_noise import value_noise
from looking_glass.grid import TILE_SIZE

BLOCK_PX = 384  # road spacing in world pixels
ROOF_COLOURS = [
    (168, 74, 58), (150, 60, 48), (120, 120, 125), (95, 98, 104), (200, 200, 196),
    (225, 222, 210), (110, 80, 60), (70, 72, 80), (176, 130, 96), (140, 150, 160),
]


def _seed(*parts: int) -> int:
    digest = hashlib.blake2b(",".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def _roads_1d(start: int, length: int, z: int, axis: int) -> np.ndarray:
    """Boolean road coverage along one world axis for pixels [start, start+length)."""
    covered = np.zeros(length, bool)
    first_block = start // BLOCK_PX - 1
    last_block = (start + length) // BLOCK_PX + 1
    for block in range(first_block, last_block + 1):
        rng = np.random.default_rng(_seed(z, axis, block, 7))
        if rng.random() < 0.25:  # not every block boundary has a road
            continue
        centre = block * BLOCK_PX + int(rng.integers(-40, 40))
        half = int(rng.integers(4, 8))
        lo, hi = max(centre - half - start, 0), min(centre + half - start, length)
        if lo < hi:
            covered[lo:hi] = True
    return covered


def _building_polygon(rng: np.random.Generator, cx: float, cy: float, angle: float):
    w, h = rng.uniform(10, 42), rng.uniform(10, 36)
    if rng.random() < 0.3:  # L-shaped footprint
        cut_w, cut_h = w * rng.uniform(0.3, 0.6), h * rng.uniform(0.3, 0.6)
        local = [(-w / 2, -h / 2), (w / 2, -h / 2), (w / 2, h / 2 - cut_h),
                 (w / 2 - cut_w, h / 2 - cut_h), (w / 2 - cut_w, h / 2), (-w / 2, h / 2)]
    else:
        local = [(-w / 2, -h / 2), (w / 2, -h / 2), (w / 2, h / 2), (-w / 2, h / 2)]
    c, s = math.cos(angle), math.sin(angle)
    return [(cx + px * c - py * s, cy + px * s + py * c) for px, py in local]


def render_tile(z: int, x: int, y: int, size: int = TILE_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Demo-world RGB image (size, size, 3) uint8 and the exact building mask (size, size) bool."""
    gx0, gy0 = x * size, y * size
    gx, gy = np.meshgrid(np.arange(gx0, gx0 + size), np.arange(gy0, gy0 + size))
    rng = np.random.default_rng(_seed(z, x, y))

    # Land cover: soil tones mixed with grass by two octaves of noise.
    grass = value_noise(gx, gy, 180.0, 11) * 0.7 + value_noise(gx, gy, 45.0, 12) * 0.3
    soil = np.array([176, 156, 120], float)
    green = np.array([92, 124, 64], float)
    t = np.clip((grass - 0.35) * 2.5, 0, 1)[..., None]
    img = soil * (1 - t) + green * t
    img += (value_noise(gx, gy, 9.0, 13)[..., None] - 0.5) * 28

    # Roads, continuous across tiles.
    road = _roads_1d(gx0, size, z, 0)[None, :] | _roads_1d(gy0, size, z, 1)[:, None]
    img[road] = np.array([88, 88, 92], float) + (value_noise(gx, gy, 3.0, 14)[road, None] - 0.5) * 12

    canvas = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    occupied = Image.fromarray((road * 255).astype(np.uint8))
    occ_draw = ImageDraw.Draw(occupied)

    # Trees: dark crowns with a lit side, never on roads or buildings.
    for _ in range(int(rng.integers(0, 18) * (0.3 + grass.mean()))):
        cx, cy, r = rng.uniform(0, size), rng.uniform(0, size), rng.uniform(3, 9)
        if road[int(cy) % size, int(cx) % size]:
            continue
        draw.ellipse([cx - r + 2, cy - r + 2, cx + r + 2, cy + r + 2], fill=(40, 52, 30))
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=(58, 92, 44))
        draw.ellipse([cx - r * 0.6, cy - r * 0.7, cx + r * 0.2, cy], fill=(74, 110, 56))
        occ_draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)

    # Buildings: density follows a slow noise field (town vs countryside).
    mask_img = Image.new("L", (size, size), 0)
    mask_draw = ImageDraw.Draw(mask_img)
    density = float(value_noise(np.array([gx0 + size / 2]), np.array([gy0 + size / 2]), 900.0, 15)[0])
    attempts = int(rng.integers(0, 4) + density * 22)
    base_angle = rng.uniform(0, math.pi / 2) if rng.random() < 0.5 else 0.0
    shadow = (int(rng.integers(2, 6)), int(rng.integers(2, 6)))
    occ = np.asarray(occupied)
    for _ in range(attempts):
        angle = base_angle + (rng.normal(0, 0.08) if rng.random() < 0.8 else rng.uniform(0, math.pi))
        poly = _building_polygon(rng, rng.uniform(0, size), rng.uniform(0, size), angle)
        xs, ys = [p[0] for p in poly], [p[1] for p in poly]
        margin = 3
        if min(xs) < margin or min(ys) < margin or max(xs) > size - margin - shadow[0] or max(ys) > size - margin - shadow[1]:
            continue
        probe = Image.new("L", (size, size), 0)
        ImageDraw.Draw(probe).polygon(poly, fill=255)
        grown = np.asarray(probe.filter(ImageFilter.MaxFilter(7))) > 0
        if (grown & (occ > 0)).any():
            continue
        roof = np.array(ROOF_COLOURS[int(rng.integers(len(ROOF_COLOURS)))], float)
        roof = np.clip(roof + rng.normal(0, 10, 3), 0, 255)
        shade = tuple(int(v) for v in np.clip(roof * 0.55, 0, 255))
        lit = tuple(int(v) for v in roof)
        draw.polygon([(px + shadow[0], py + shadow[1]) for px, py in poly], fill=(45, 45, 40))
        draw.polygon(poly, fill=lit)
        if len(poly) == 4 and rng.random() < 0.6:  # gable roof: one slope darker
            cx, cy = sum(xs) / len(xs), sum(ys) / len(ys)
            half = [(px, py) for px, py in poly if (px - cx) * math.cos(angle) + (py - cy) * math.sin(angle) >= 0]
            if len(half) >= 2:
                dark = tuple(int(v) for v in (np.array(lit) * 0.5 + np.array(shade) * 0.5))
                draw.polygon(half + [(cx, cy)], fill=dark)
                draw.polygon(poly, outline=lit)
        mask_draw.polygon(poly, fill=255)
        occ_draw.polygon(poly, fill=255)
        occ = np.asarray(occupied)

    rgb = np.asarray(canvas.filter(ImageFilter.GaussianBlur(0.6)), dtype=np.float64)
    rgb = rgb + rng.normal(0, 4.0, rgb.shape)
    image = np.clip(rgb, 0, 255).astype(np.uint8)
    return image, np.asarray(mask_img) > 0
