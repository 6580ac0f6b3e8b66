"""Tile cover speed: looking_glass.cover against mercantile bounding-box tiles filtered by shapely
(the exact reference), in one process, on the same AOIs. Prints tiles/s and the speed ratio.

    .venv/bin/python benchmarks/cover_benchmark.py
"""

from __future__ import annotations

import time

import shapely

from looking_glass.aoi import parse_aoi
from looking_glass.cover import count_tiles, iter_tiles, reference_cover, tile_runs
from looking_glass.demo import sample_aoi_bytes


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main() -> None:
    sample = parse_aoi(sample_aoi_bytes()).geometry
    # A wobbly 600-vertex "district" of about 3,500 zoom-18 tiles.
    district = shapely.Point(30.06, -1.95).buffer(0.05, quad_segs=150)
    district = shapely.affinity.scale(district, 1.0, 0.8)
    cases = [("sample AOI (demo)", sample, 18), ("district, 600 vertices", district, 18)]
    print(f"{'AOI':<26}{'tiles':>9}{'ours tiles/s':>15}{'reference tiles/s':>19}{'speed-up':>10}  same set")
    for name, geom, zoom in cases:
        runs, t_ours = timed(lambda: tile_runs(geom, zoom))
        ref, t_ref = timed(lambda: reference_cover(geom, zoom))
        n = count_tiles(runs)
        same = set(iter_tiles(runs, zoom)) == ref
        print(f"{name:<26}{n:>9,}{n / t_ours:>15,.0f}{len(ref) / t_ref:>19,.0f}{t_ref / t_ours:>9.1f}x  {same}")


if __name__ == "__main__":
    main()
