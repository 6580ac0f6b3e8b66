"""Buildings of the synthetic world and the things around them that are not buildings.

Buildings are houses (rectangles or L-shapes with gable, hip or flat roofs, sometimes small
boxes on the roof) and commercial blocks (large, flat, light roofs, with a parking lot of striped
bays and cars). Each is drawn into a height field (metres) and an albedo (R, G, B, NIR) so that
the illumination (``synthetic_sensor``) shades roof slopes and casts shadows with the scene's sun.
Around houses: driveways, cars, pools with their coping and fences. The truth mask is the union
of building footprints, exactly; every building lies inside its tile, so the per-tile truth is exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from looking_glass.datasets.synthetic_scene import ASPHALT, CONCRETE, POOL, ROOF_MATERIALS, ROOF_WEIGHTS, Scene

CAR_COLOURS = np.array([
    [0.55, 0.55, 0.56, 0.55], [0.35, 0.36, 0.37, 0.36], [0.04, 0.04, 0.045, 0.05], [0.15, 0.15, 0.16, 0.16],
    [0.36, 0.05, 0.05, 0.30], [0.05, 0.10, 0.30, 0.12], [0.40, 0.38, 0.30, 0.40],
], np.float32)
FENCE = np.array([0.26, 0.21, 0.16, 0.30], np.float32)
WHITE_PAINT = np.array([0.6, 0.6, 0.58, 0.6], np.float32)


@dataclass
class Layers:
    """What the world is made of, on a window of the tile plus ``pad`` pixels on every side."""

    height: np.ndarray  # (W, W) float32, metres above ground
    albedo: np.ndarray  # (W, W, 4) float32 reflectance
    ground: np.ndarray  # (W, W) bool: bare ground where driveways, pools, fences may go
    blocked: np.ndarray  # (W, W) bool: where no new building may go (roads, buildings + margin)
    clear: np.ndarray  # (W, W) bool: where no tree may stand (roads, buildings + clearance)
    truth: np.ndarray  # (S, S) bool, the tile's building footprints
    pad: int
    m_per_px: float
    base: np.ndarray | None = None  # (W, W) float32: lowest blocking height (crowns float on trunks)

    def __post_init__(self):
        if self.base is None:
            self.base = np.zeros_like(self.height)


def _box(layers: Layers, cx: float, cy: float, angle: float, a: float, b: float):
    """Window slices of the bounding box of a rotated rectangle and its pixels' local (u, v)."""
    c, s = math.cos(angle), math.sin(angle)
    ex, ey = abs(a * c) + abs(b * s) + 1, abs(a * s) + abs(b * c) + 1
    size = layers.height.shape[0]
    x0, x1 = max(int(cx - ex), 0), min(int(math.ceil(cx + ex)), size)
    y0, y1 = max(int(cy - ey), 0), min(int(math.ceil(cy + ey)), size)
    if x0 >= x1 or y0 >= y1:
        return None
    dx = (np.arange(x0, x1, dtype=np.float32) + 0.5 - cx)[None, :]
    dy = (np.arange(y0, y1, dtype=np.float32) + 0.5 - cy)[:, None]
    return (slice(y0, y1), slice(x0, x1)), dx * c + dy * s, -dx * s + dy * c


def _paint(layers: Layers, cx, cy, angle, a, b, albedo, height=0.0, only_ground=True, rounded=0.0):
    """Paint a flat rectangle (optionally rounded, optionally raised) where there is bare ground."""
    box = _box(layers, cx, cy, angle, a, b)
    if box is None:
        return None
    sl, u, v = box
    if rounded > 0:
        qu, qv = np.maximum(np.abs(u) - (a - rounded), 0), np.maximum(np.abs(v) - (b - rounded), 0)
        inside = (np.abs(u) <= a) & (np.abs(v) <= b) & (qu * qu + qv * qv <= rounded * rounded)
    else:
        inside = (np.abs(u) <= a) & (np.abs(v) <= b)
    if only_ground:
        inside &= layers.ground[sl]
        layers.blocked[sl] |= inside
        layers.clear[sl] |= inside
    layers.albedo[sl][inside] = albedo
    if height:
        layers.height[sl][inside] = np.maximum(layers.height[sl][inside], height)
    return sl, inside


def _roof_material(rng: np.random.Generator, big: bool) -> np.ndarray:
    if big:
        idx = int(rng.choice([3, 6, 7, 8, 1]))
    else:
        idx = int(rng.choice(len(ROOF_MATERIALS), p=ROOF_WEIGHTS))
    rgb = np.array(ROOF_MATERIALS[idx][0], np.float32) * rng.uniform(0.8, 1.25)
    nir = rgb.mean() * rng.uniform(0.9, 1.35)
    return np.clip(np.append(rgb, nir), 0.01, 0.9).astype(np.float32)


def _parts(rng: np.random.Generator, big: bool, m: float, cx: float, cy: float, angle: float):
    """The rectangles (cx, cy, a, b) of one footprint in px (a: half-length along angle)."""
    if big:
        a, b = rng.uniform(10, 32) / m, rng.uniform(8, 22) / m
    else:
        a, b = rng.uniform(4.5, 11) / m, rng.uniform(3.8, 7.5) / m
    a, b = max(a, b), min(a, b)
    parts = [(cx, cy, a, b)]
    if not big and rng.random() < 0.35:  # L-shape: a wing off one end, perpendicular
        wa, wb = rng.uniform(0.5, 0.9) * b * 1.4, rng.uniform(0.45, 0.8) * b
        side = 1 if rng.random() < 0.5 else -1
        along = side * (a - wb)
        across = (1 if rng.random() < 0.5 else -1) * (b + wa * 0.8)
        c, s = math.cos(angle), math.sin(angle)
        parts.append((cx + along * c - across * s, cy + along * s + across * c, wa, wb))
    return parts


def place_buildings(scene: Scene, layers: Layers, rng: np.random.Generator, density: float) -> int:
    """Place this tile's buildings (with their driveways, cars, pools, fences, parking lots)."""
    m, pad = layers.m_per_px, layers.pad
    size = layers.truth.shape[0]
    attempts = int(rng.integers(0, 4) + density * 22 * scene.building_density)
    base = scene.road_angle + (math.pi / 2 if rng.random() < 0.5 else 0.0)
    placed = 0
    for _ in range(attempts):
        big = bool(rng.random() < scene.big_buildings)
        aligned = rng.random() < 0.8
        angle = base + rng.normal(0, 0.05) if aligned else rng.uniform(0, math.pi)
        cx, cy = pad + rng.uniform(0, size), pad + rng.uniform(0, size)
        parts = [(px, py, a, b, angle if i == 0 else angle + math.pi / 2) for i, (px, py, a, b)
                 in enumerate(_parts(rng, big, m, cx, cy, angle))]
        margin = 2.0 / m
        boxes = [_box(layers, px, py, ang, a + margin, b + margin) for px, py, a, b, ang in parts]
        if any(bx is None for bx in boxes):
            continue
        inside_tile = all(sl[0].start >= pad + 2 and sl[1].start >= pad + 2 and sl[0].stop <= pad + size - 2
                          and sl[1].stop <= pad + size - 2 for sl, _, _ in boxes)
        if not inside_tile or any(layers.blocked[sl][(np.abs(u) <= a + margin) & (np.abs(v) <= b + margin)].any()
                                  for (sl, u, v), (_, _, a, b, _) in zip(boxes, parts)):
            continue
        _draw_building(scene, layers, rng, big, parts)
        _surroundings(scene, layers, rng, big, parts)
        placed += 1
    return placed


def _draw_building(scene: Scene, layers: Layers, rng: np.random.Generator, big: bool, parts) -> None:
    m, pad = layers.m_per_px, layers.pad
    wall = rng.uniform(4, 12) if big else rng.uniform(3, 7)
    roof = "flat" if big or rng.random() < 0.12 else ("gable" if rng.random() < 0.55 else "hip")
    ridge = rng.uniform(1.5, 4.5)
    material = _roof_material(rng, big)
    # no tree stands closer than this, so crowns overhang roofs only partly
    clearance = rng.uniform(0.45, 1.1) * scene.tree_cell_m / m
    for px, py, a, b, ang in parts:
        sl, u, v = _box(layers, px, py, ang, a + clearance, b + clearance)
        foot = (np.abs(u) <= a) & (np.abs(v) <= b)
        if roof == "gable":
            h = wall + ridge * (1 - np.abs(v) / b)
        elif roof == "hip":
            h = wall + ridge * np.clip(np.minimum(b - np.abs(v), a - np.abs(u)) / b, 0, 1)
        else:
            h = np.full(u.shape, wall, np.float32)
        cur = layers.height[sl]
        cur[foot] = np.maximum(cur[foot], h[foot])
        layers.albedo[sl][foot] = material
        layers.ground[sl][foot] = False
        near = (np.abs(u) <= a + clearance) & (np.abs(v) <= b + clearance)
        layers.clear[sl] |= near
        grow = 2.0 / m
        layers.blocked[sl] |= (np.abs(u) <= a + grow) & (np.abs(v) <= b + grow)
        size = layers.truth.shape[0]
        y0, x0 = sl[0].start - pad, sl[1].start - pad
        cy0, cx0 = max(y0, 0), max(x0, 0)
        cy1, cx1 = min(sl[0].stop - pad, size), min(sl[1].stop - pad, size)
        layers.truth[cy0:cy1, cx0:cx1] |= foot[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0]
    if roof == "flat" and rng.random() < 0.6:  # boxes on the roof (air conditioning, stair heads)
        px, py, a, b, ang = parts[0]
        for _ in range(int(rng.integers(1, 5 if big else 2))):
            ox, oy = rng.uniform(-0.7, 0.7) * a, rng.uniform(-0.7, 0.7) * b
            c, s = math.cos(ang), math.sin(ang)
            bx, by = px + ox * c - oy * s, py + ox * s + oy * c
            half = rng.uniform(0.6, 2.0) / m
            _paint(layers, bx, by, ang, half, half * rng.uniform(0.6, 1.0), material * rng.uniform(0.7, 1.4),
                   height=wall + rng.uniform(0.8, 2.0), only_ground=False)


def _surroundings(scene: Scene, layers: Layers, rng: np.random.Generator, big: bool, parts) -> None:
    """Driveway and car, pool, fence (houses); parking lot with bays and cars (commercial)."""
    m = layers.m_per_px
    px, py, a, b, ang = parts[0]
    c, s = math.cos(ang), math.sin(ang)
    front = 1 if rng.random() < 0.5 else -1
    if big:
        depth = rng.uniform(12, 30) / m
        lx, ly = px - front * (b + depth / 2 + 0.5 / m) * s, py + front * (b + depth / 2 + 0.5 / m) * c
        hit = _paint(layers, lx, ly, ang, a, depth / 2, ASPHALT * rng.uniform(0.7, 2.0))
        if hit is not None:
            sl, inside = hit
            _, u, v = _box(layers, lx, ly, ang, a, depth / 2)
            bay = 2.7 / m
            stripes = inside & ((u % bay) < max(0.15 / m, 0.6)) & (np.abs(v) < depth / 2 - 0.5 / m)
            layers.albedo[sl][stripes] = WHITE_PAINT
            occupancy = rng.uniform(0.2, 0.9)
            for row in (-1, 1):
                for k in range(int(2 * a / bay)):
                    if rng.random() < occupancy:
                        cu = -a + (k + 0.5) * bay
                        cv = row * depth / 4
                        _car(layers, rng, lx + cu * c - cv * s, ly + cu * s + cv * c, ang + math.pi / 2)
        return
    if rng.random() < 0.75:  # driveway from the front, sometimes with a car
        length, half_w = rng.uniform(6, 25) / m, rng.uniform(1.5, 3.2) / m
        off = rng.uniform(-0.6, 0.6) * a
        dx, dy = px + off * c - front * (b + length / 2) * s, py + off * s + front * (b + length / 2) * c
        material = CONCRETE * rng.uniform(0.7, 1.3) if rng.random() < 0.7 else ASPHALT * rng.uniform(0.8, 2.0)
        _paint(layers, dx, dy, ang + math.pi / 2, length / 2, half_w, material)
        if rng.random() < 0.45:
            t = rng.uniform(-0.3, 0.3) * length
            _car(layers, rng, dx - t * s, dy + t * c, ang + math.pi / 2)
    if rng.random() < 0.15:  # pool behind the house, with a concrete coping
        pa, pb = rng.uniform(2.5, 6) / m, rng.uniform(1.5, 3) / m
        dist = b + pb + rng.uniform(2, 6) / m
        qx, qy = px + front * dist * s, py - front * dist * c
        if _box(layers, qx, qy, ang, pa + 1 / m, pb + 1 / m) is not None:
            _paint(layers, qx, qy, ang, pa + 0.8 / m, pb + 0.8 / m, CONCRETE, rounded=0.5 / m)
            _paint(layers, qx, qy, ang, pa, pb, POOL * rng.uniform(0.8, 1.2), rounded=min(pb, rng.uniform(0, 2) / m))
    if rng.random() < 0.3:  # a fence around the lot: a one-pixel ring, 1.5 m high
        la, lb = a + rng.uniform(5, 12) / m, b + rng.uniform(5, 12) / m
        box = _box(layers, px, py, ang, la, lb)
        if box is not None:
            sl, u, v = box
            ring = ((np.abs(u) <= la) & (np.abs(v) <= lb) & ((np.abs(u) > la - 1) | (np.abs(v) > lb - 1))
                    & layers.ground[sl] & ~layers.blocked[sl])
            layers.albedo[sl][ring] = FENCE * rng.uniform(0.6, 1.4)
            layers.height[sl][ring] = np.maximum(layers.height[sl][ring], 1.5)


def _car(layers: Layers, rng: np.random.Generator, cx: float, cy: float, angle: float) -> None:
    m = layers.m_per_px
    colour = CAR_COLOURS[int(rng.integers(len(CAR_COLOURS)))] * rng.uniform(0.85, 1.15)
    _paint(layers, cx, cy, angle, 2.3 / m, 0.95 / m, colour, height=1.5, rounded=0.4 / m)
