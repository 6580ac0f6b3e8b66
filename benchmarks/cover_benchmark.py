"""Tile cover speed, memory and exactness, in one process, on the same real AOIs:

- looking_glass.tiling.cover (boundary tiles + centre scanline, runs per row);
- supermercado's ``burn`` (rasterises the AOI onto the tile grid);
- mercantile's bounding-box tiles filtered by shapely ``intersects`` (the usual few lines of
  code; note that ``intersects`` also keeps tiles that only touch the AOI);
- the exact reference (``looking_glass.tiling.cover.reference_cover``): bounding-box tiles whose overlap
  with the AOI has area > 0, row by row, over the whole cover up to a few million tiles, else
  over a sample of rows (said so in the table).

AOIs (benchmarks/data/, see convert_boundaries.py for their sources):
- city: New York City's five boroughs (NYC Department of City Planning), 75,500 vertices;
- region: Sierra Leone (Natural Earth 1:110m), about 3.4 million zoom-18 tiles;
- country: Mali (Natural Earth 1:110m), about 58 million zoom-18 tiles.

Prints tiles/s (best of 3), peak traced memory (a separate traced run) and whether each tile set
equals the reference. Peers that cannot finish an AOI are skipped with the reason.

``--whole-process`` measures instead what a user waits for: ``looking-glass cover
new_york_city.geojson --zoom Z --format count`` as a fresh process (interpreter start, imports,
reading and validating the AOI, the cover), best (and median) of ``--repeat`` after one untimed
run that writes the bytecode caches, against supermercado's ``burn``
in process (its imports and set-up excluded), with the start-up alone (``python -c "import
looking_glass.cli.main"``) and the bare interpreter for scale. ``--baseline DIR`` times the same
command with another checkout of the package first on the path (``git worktree add DIR COMMIT``),
runs interleaved, so before and after share the machine's load.

    .venv/bin/python benchmarks/cover_benchmark.py [--skip-country] [--zoom 18]
    .venv/bin/python benchmarks/cover_benchmark.py --whole-process --zoom 22 [--repeat 10] [--baseline DIR]
"""

from __future__ import annotations

import argparse
import functools
import gc
import os
import resource
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import shapely

from looking_glass.local.demo import sample_aoi_bytes
from looking_glass.tiling.aoi import parse_aoi
from looking_glass.tiling.cover import count_tiles, iter_tiles, reference_cover, tile_runs

DATA = Path(__file__).resolve().parent / "data"
REFERENCE_MAX_TILES = 4_000_000  # beyond this the reference checks a sample of rows
MERCANTILE_MAX_BBOX_TILES = 2_000_000  # one Python Tile object per bounding-box tile
REFERENCE_SAMPLE_ROWS = 48
SUPERMERCADO_MAX_TILES = 20_000_000  # burn returns one int64 row of (x, y, z) per tile


def load_aoi(name: str) -> shapely.Geometry:
    """A benchmark AOI from benchmarks/data, through the same validation as the Lambda."""
    return parse_aoi((DATA / f"{name}.geojson").read_bytes()).geometry


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


def supermercado_tiles(geom, zoom):
    from supermercado import burntiles

    features = [{"type": "Feature", "properties": {}, "geometry": shapely.geometry.mapping(p)} for p in getattr(geom, "geoms", [geom])]
    return burntiles.burn(features, zoom)


def mercantile_shapely_tiles(geom, zoom):
    import mercantile

    shapely.prepare(geom)
    tiles = list(mercantile.tiles(*geom.bounds, zooms=zoom))
    bounds = np.array([mercantile.bounds(t) for t in tiles]).reshape(-1, 4)
    hit = shapely.intersects(geom, shapely.box(bounds[:, 0], bounds[:, 1], bounds[:, 2], bounds[:, 3]))
    return [tiles[i] for i in np.flatnonzero(hit)]


def bbox_tiles(geom, zoom) -> int:
    import mercantile

    west, south, east, north = geom.bounds
    ul, lr = mercantile.tile(west, north, zoom), mercantile.tile(east, south, zoom)
    return (lr.x - ul.x + 1) * (lr.y - ul.y + 1)


def runs_in_rows(runs: np.ndarray, rows: set[int], zoom: int) -> set[tuple[int, int, int]]:
    return set(iter_tiles(runs[np.isin(runs[:, 0], list(rows))], zoom))


def compare(name: str, got: set, ref: set) -> str:
    if got == ref:
        return "yes"
    return f"NO ({len(got - ref):,} extra, {len(ref - got):,} missing)"


def row(aoi, method, tiles, seconds, mib, note=""):
    rate = f"{tiles / seconds:,.0f}" if seconds else "-"
    print(f"{aoi:<42}{method:<14}{tiles:>12,}{rate:>16}{mib:>10.1f}{seconds * 1000:>11.1f}  {note}")


def process_seconds(argv: list[str], source: Path) -> tuple[float, float]:
    """Wall-clock and CPU (user + system) seconds of one fresh run of ``python ARGV`` with the
    package at ``source`` first on the path (run in ``source``: ``-c`` and ``-m`` put the working
    directory before PYTHONPATH); a run that fails stops the benchmark with its error."""
    # Bytecode caches written and used, as a package installed by pip has them (pip compiles at
    # install): with PYTHONDONTWRITEBYTECODE set (as in the development shell) every run compiled
    # the checkout's modules again, a cost no user pays.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"} | {"PYTHONPATH": str(source)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, *argv], env=env, cwd=source, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} (source {source}) failed: {proc.stderr.strip()[-500:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def whole_process(zoom: int, repeat: int, baseline: Path | None) -> None:
    """``looking-glass cover`` on New York City as a whole process, against supermercado's burn
    in process, for this checkout and the ``baseline`` one; best of ``repeat`` runs each, wall
    clock and CPU time (on a shared machine CPU time is the steadier of the two)."""
    here = Path(__file__).resolve().parent.parent
    sources = {"new": here, **({"baseline": baseline.resolve()} if baseline else {})}
    aoi = str(DATA / "new_york_city.geojson")
    commands = {
        "python -c pass": ["-c", "pass"],
        "import looking_glass.cli.main": ["-c", "import looking_glass.cli.main"],
        f"cover --zoom {zoom} --format count": ["-m", "looking_glass.cli.main", "cover", aoi,
                                                "--zoom", str(zoom), "--format", "count"],
    }
    geom = load_aoi("new_york_city")
    supermercado_tiles(geom, 18)  # its imports and first-call set-up out of the timing
    burn_wall, burn_cpu = [], []
    for _ in range(3):
        gc.collect()
        wall, cpu = time.perf_counter(), time.process_time()
        tiles = supermercado_tiles(geom, zoom)
        burn_wall.append(time.perf_counter() - wall)
        burn_cpu.append(time.process_time() - cpu)
        del tiles
    for source in sources.values():  # untimed: writes the bytecode caches
        for argv in commands.values():
            process_seconds(argv, source)
    times: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for _ in range(repeat):  # interleaved: each round runs every command from every checkout once
        for label, source in sources.items():
            for name, argv in commands.items():
                times.setdefault((label, name), []).append(process_seconds(argv, source))
    print(f"New York City at zoom {zoom}: {count_tiles(tile_runs(geom, zoom)):,} tiles; best of {repeat} "
          f"fresh processes each, interleaved (supermercado: best of 3 in process)\n")
    print(f"{'what':<46}{'wall s':>8}{'CPU s':>8}{'median':>8}   supermercado / this (wall, CPU; median wall)")
    print(f"{'supermercado burn, in process, no imports':<46}{min(burn_wall):>8.3f}{min(burn_cpu):>8.3f}"
          f"{sorted(burn_wall)[1]:>8.3f}")
    for (label, name), runs in times.items():
        wall, cpu = min(w for w, _ in runs), min(c for _, c in runs)
        median = sorted(w for w, _ in runs)[len(runs) // 2]
        ratio = (f"{min(burn_wall) / wall:.1f}x, {min(burn_cpu) / cpu:.1f}x; {sorted(burn_wall)[1] / median:.1f}x"
                 if name.startswith("cover") else "")
        print(f"{label + ': ' + name:<46}{wall:>8.3f}{cpu:>8.3f}{median:>8.3f}   {ratio}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--skip-country", action="store_true")
    parser.add_argument("--zoom", type=int, default=18)
    parser.add_argument("--whole-process", action="store_true",
                        help="time looking-glass cover on New York City as a fresh process instead of the table")
    parser.add_argument("--repeat", type=int, default=10, help="runs per command with --whole-process")
    parser.add_argument("--baseline", type=Path, help="with --whole-process: another checkout to time too")
    args = parser.parse_args()
    zoom = args.zoom
    if args.whole_process:
        whole_process(zoom, args.repeat, args.baseline)
        return

    cases = [
        ("sample AOI (Kigali)", parse_aoi(sample_aoi_bytes()).geometry),
        ("city: New York City", load_aoi("new_york_city")),
        ("region: Sierra Leone", load_aoi("sierra_leone")),
    ]
    if not args.skip_country:
        cases.append(("country: Mali", load_aoi("mali")))

    supermercado_tiles(cases[0][1], zoom)  # imports and first-call set-up out of the timings
    tile_runs(cases[0][1], zoom)
    print(f"zoom {zoom}; times are the best of 3, memory is the peak traced by tracemalloc\n")
    print(f"{'AOI':<42}{'method':<14}{'tiles':>12}{'tiles/s':>16}{'peak MiB':>10}{'ms':>11}  equals the exact reference")
    for name, geom in cases:
        label = f"{name} ({shapely.get_num_coordinates(geom):,} vertices)"
        runs, t, mem = measure(functools.partial(tile_runs, geom, zoom))
        n = count_tiles(runs)

        # The exact reference: whole cover, or a sample of rows spread over the AOI.
        if n <= REFERENCE_MAX_TILES:
            start = time.perf_counter()
            ref = reference_cover(geom, zoom)
            t_ref = time.perf_counter() - start
            sample, scope = None, "all rows"
        else:
            sample = set(np.unique(np.linspace(runs[0, 0], runs[-1, 0], REFERENCE_SAMPLE_ROWS).astype(int)).tolist())
            start = time.perf_counter()
            ref = reference_cover(geom, zoom, rows=sample)
            t_ref = time.perf_counter() - start
            scope = f"{len(sample)} sampled rows"
        ours = set(iter_tiles(runs, zoom)) if sample is None else runs_in_rows(runs, sample, zoom)
        row(label, "looking_glass", n, t, mem, f"{compare('ours', ours, ref)} ({scope})")

        if n <= SUPERMERCADO_MAX_TILES:
            tiles, t2, mem2 = measure(functools.partial(supermercado_tiles, geom, zoom))
            theirs = {tuple(map(int, r)) for r in tiles}
            if sample is not None:
                theirs = {t_ for t_ in theirs if t_[1] in sample}
            row("", "supermercado", len(tiles), t2, mem2,
                f"{compare('theirs', theirs, ref)} ({scope}); looking_glass is {t2 / t:.1f}x faster")
        else:
            print(f"{'':<42}{'supermercado':<14}  skipped: {n:,} tiles x 24 B per (x, y, z) row "
                  f"would need {n * 24 / 2**30:.1f} GiB for its output alone")

        if bbox_tiles(geom, zoom) <= MERCANTILE_MAX_BBOX_TILES:
            tiles, t4, mem4 = measure(functools.partial(mercantile_shapely_tiles, geom, zoom))
            theirs = {(t_.x, t_.y, t_.z) for t_ in tiles}
            if sample is not None:
                theirs = {t_ for t_ in theirs if t_[1] in sample}
            row("", "mercantile+sh", len(tiles), t4, mem4,
                f"{compare('theirs', theirs, ref)} ({scope}); looking_glass is {t4 / t:,.0f}x faster")
        else:
            print(f"{'':<42}{'mercantile+sh':<14}  skipped: {bbox_tiles(geom, zoom):,} bounding-box tiles, "
                  "one Python object each")

        ref_tiles = len(ref)
        if sample is None:
            row("", "reference", ref_tiles, t_ref, float("nan"), f"shapely per tile, all rows; looking_glass is {t_ref / t:,.0f}x faster")
        else:
            print(f"{'':<42}{'reference':<14}  {ref_tiles:,} tiles in {scope} took {t_ref:.1f} s "
                  f"({ref_tiles / t_ref:,.0f} tiles/s): the whole cover would take ~{n / (ref_tiles / t_ref) / 60:,.0f} min")


if __name__ == "__main__":
    main()
