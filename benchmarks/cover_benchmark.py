"""Tile cover speed and memory, in one process, on the same AOIs:

- looking_glass.cover (exact slab scanline);
- supermercado's ``burn`` (rasterises the AOI onto the tile grid);
- the exact reference: mercantile bounding-box tiles filtered by shapely (area > 0).

Prints tiles/s (best of 3), peak traced memory (a separate traced run) and whether each peer's tile set equals ours. Peers that would
take too long on an AOI are skipped, and the table says so with the reason.

    .venv/bin/python benchmarks/cover_benchmark.py [--skip-country]
"""

from __future__ import annotations

import argparse
import gc
import time
import tracemalloc

import numpy as np
import shapely

from looking_glass.aoi import parse_aoi
from looking_glass.cover import count_tiles, iter_tiles, reference_cover, tile_runs
from looking_glass.demo import sample_aoi_bytes

REFERENCE_MAX_TILES = 300_000  # the brute-force filter runs at ~20k tiles/s
SUPERMERCADO_MAX_TILES = 20_000_000  # burn returns one int64 row per tile: 24 bytes each


def wobbly(lon: float, lat: float, radius_deg: float, vertices: int, seed: int) -> shapely.Polygon:
    """A simple polygon with a jagged many-vertex boundary (a stand-in for an admin border):
    star-shaped around its centre, so it never self-intersects."""
    rng = np.random.default_rng(seed)
    angles = np.linspace(0, 2 * np.pi, vertices, endpoint=False)
    smooth = 1 + 0.25 * np.sin(3 * angles) + 0.15 * np.sin(7 * angles + 1) + 0.05 * np.sin(41 * angles)
    # A detrended random walk: borders wander at every scale, as digitised ones do.
    walk = np.cumsum(rng.normal(0, 0.004, vertices))
    walk -= np.linspace(0, walk[-1], vertices)
    radius = radius_deg * smooth * np.exp(walk - walk.mean())
    return shapely.Polygon(np.column_stack([lon + radius * np.cos(angles), lat + 0.9 * radius * np.sin(angles)]))


def measure(fn):
    """Best of three timed runs (no tracing), then one traced run for peak memory."""
    times = []
    for _ in range(3):
        gc.collect()
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    gc.collect()
    tracemalloc.start()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return out, min(times), peak / 2**20


def supermercado_set(geom, zoom):
    from supermercado import burntiles

    features = [{"type": "Feature", "properties": {}, "geometry": shapely.geometry.mapping(p)} for p in getattr(geom, "geoms", [geom])]
    return burntiles.burn(features, zoom)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--skip-country", action="store_true")
    args = parser.parse_args()
    cases = [
        ("sample AOI (314 tiles)", parse_aoi(sample_aoi_bytes()).geometry),
        ("city, 4,000 vertices", wobbly(30.06, -1.95, 0.06, 4000, 1)),
        ("region, 8,000 vertices", wobbly(30.0, -2.0, 0.75, 8000, 2)),
    ]
    if not args.skip_country:
        cases.append(("country, 20,000 vertices", wobbly(20.0, 5.0, 6.5, 20000, 3)))
    zoom = 18
    supermercado_set(cases[0][1], zoom)  # imports and first-call set-up out of the timings
    tile_runs(cases[0][1], zoom)
    print(f"{'AOI':<26}{'method':<14}{'tiles':>12}{'tiles/s':>14}{'peak MiB':>10}{'seconds':>9}  same set as ours")
    for name, geom in cases:
        runs, t, mem = measure(lambda: tile_runs(geom, zoom))
        n = count_tiles(runs)
        ours = None
        print(f"{name:<26}{'looking_glass':<14}{n:>12,}{n / t:>14,.0f}{mem:>10.1f}{t:>9.2f}")
        if n <= SUPERMERCADO_MAX_TILES:
            tiles, t2, mem2 = measure(lambda: supermercado_set(geom, zoom))
            ours = set(iter_tiles(runs, zoom)) if n <= 5_000_000 else None
            same = "n/a (set too big to compare)" if ours is None else str({tuple(map(int, r)) for r in tiles} == ours)
            print(f"{'':<26}{'supermercado':<14}{len(tiles):>12,}{len(tiles) / t2:>14,.0f}{mem2:>10.1f}{t2:>9.2f}  {same}  (ours {t2 / t:.0f}x faster)")
        else:
            print(f"{'':<26}{'supermercado':<14}  skipped: {n:,} tiles x 24 B per tile row would need {n * 24 / 2**30:.1f} GiB")
        if n <= REFERENCE_MAX_TILES:
            gc.collect()
            start = time.perf_counter()
            ref = reference_cover(geom, zoom)  # slow: timed once, memory not traced
            t3, mem3 = time.perf_counter() - start, float("nan")
            ours = ours or set(iter_tiles(runs, zoom))
            print(f"{'':<26}{'reference':<14}{len(ref):>12,}{len(ref) / t3:>14,.0f}{mem3:>10.1f}{t3:>9.2f}  {ref == ours}  (ours {t3 / t:.0f}x faster)")
        else:
            print(f"{'':<26}{'reference':<14}  skipped: at ~20,000 tiles/s it would take {n / 20_000 / 60:,.0f} min")


if __name__ == "__main__":
    main()
