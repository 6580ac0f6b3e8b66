"""Building outlines for the demo's 314 synthetic tiles: tiles/s, peak memory and object F1.

The tiles are the demo's: the zoom-18 cover of the sample AOI (``looking_glass/data``), in
row-major order. Predictions are the synthetic world's exact truth masks (``--source truth``; the
sdt head gets their signed distance in metres) or the shipped model's probabilities
(``--source model``, needs the ``ml`` extra), on the current synthetic world or, with
``--world classic``, on the first one (``synthetic_classic``, what the shipped model up to
version 2 was trained on; the demo's AOI is far from its training tiles). They are rendered first and kept in a memory-mapped
file, so the timed part reads them as a worker would and Python's allocation tracer
(``tracemalloc``) sees only what outlining holds: instance labelling, tracing, stitching,
simplification (and regularisation with ``--regularise``) and a GeoJSON export, streamed.

Object F1 (SpaceNet rule, IoU >= 0.5) is against the world's buildings, the 4-connected regions
of the truth masks stitched across tiles. Memory is also measured on the first quarter of the
rows, to show that it does not grow with the job.

The mapping gap, with a known answer: the world's buildings less every fourth one play
"OpenStreetMap"; each tile's completeness found (the share of the predicted building area the
mapped buildings cover, :func:`looking_glass.outlines.gap.mapping_gap`) is compared with its true
completeness (the share of the world's building area in the tile they cover), over the tiles where
both have buildings, and the per-tile errors (points) are printed.

    .venv/bin/python benchmarks/outlines_benchmark.py [--source truth|model] [--head binary|sdt]
        [--world current|classic] [--regularise] [--workers N] [--cache DIR]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import tracemalloc
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from looking_glass.datasets import synthetic, synthetic_classic
from looking_glass.datasets.labels import signed_distance_m
from looking_glass.grid import ground_resolution_m, tile_center_lat
from looking_glass.local.demo import sample_aoi_bytes
from looking_glass.outlines.evaluate import evaluate_polygons
from looking_glass.outlines.exports import write_geojson
from looking_glass.outlines.gap import gap_summary, mapping_gap
from looking_glass.outlines.layers import read_polygons
from looking_glass.outlines.stitch import OutlineOptions, Stitcher, outline_tiles
from looking_glass.outlines.vectorize import tile_pieces
from looking_glass.tiling.aoi import parse_aoi
from looking_glass.tiling.cover import iter_tiles, tile_runs

S = 256


def demo_tiles() -> list[tuple[int, int, int]]:
    aoi = parse_aoi(sample_aoi_bytes(), default_name="sample_aoi")
    return [(z, x, y) for x, y, z in iter_tiles(tile_runs(aoi.geometry, 18))]


def render(tiles, source: str, head: str, folder: Path, world: str = "current"):
    """Memory-mapped (n, S, S) float32 predictions and (n, S, S) bool truth masks."""
    pred = np.lib.format.open_memmap(folder / "pred.npy", mode="w+", dtype=np.float32, shape=(len(tiles), S, S))
    truth = np.lib.format.open_memmap(folder / "truth.npy", mode="w+", dtype=bool, shape=(len(tiles), S, S))
    segmenter = None
    if source == "model":
        from looking_glass.model.segmenter import Segmenter

        segmenter = Segmenter.load()
        head = segmenter.info.head
    render_tile = synthetic_classic.render_tile if world == "classic" else synthetic.render_tile
    batch = []
    for i, (z, x, y) in enumerate(tiles):
        image, mask = render_tile(z, x, y)
        truth[i] = mask
        if segmenter is None:
            pred[i] = mask if head == "binary" else signed_distance_m(mask, ground_resolution_m(tile_center_lat(x, y, z), z))
        else:
            batch.append((i, image))
            if len(batch) == 16 or i == len(tiles) - 1:
                out = np.asarray(segmenter.model.predict_on_batch(np.stack([b[1] for b in batch]).astype(np.float32)))
                for (j, _), p in zip(batch, out[..., 0], strict=True):
                    pred[j] = p
                batch = []
    pred.flush()
    truth.flush()
    return pred, truth, head


def _pieces(args):
    (z, x, y), path, i, opts = args
    pred = np.load(path, mmap_mode="r")
    return tile_pieces(np.asarray(pred[i]), z, x, y, opts.head, threshold=opts.threshold,
                       split_depth_m=opts.split_depth_m)


def run(tiles, pred_path: Path, opts: OutlineOptions, out: Path, workers: int) -> dict:
    """Outline the tiles into ``out`` (GeoJSON), timing and tracing memory (libraries are imported
    before, as in a running worker)."""
    import rasterio.features  # noqa: F401
    import skimage.measure
    import skimage.morphology
    import skimage.segmentation  # noqa: F401

    pred = np.load(pred_path, mmap_mode="r")

    def buildings():
        if workers > 1:
            stitcher = Stitcher(opts)
            with ProcessPoolExecutor(workers) as pool:
                jobs = [(t, pred_path, i, opts) for i, t in enumerate(tiles)]
                for pieces in pool.map(_pieces, jobs, chunksize=8):
                    yield from stitcher.add(pieces)
            yield from stitcher.finish()
        else:
            yield from outline_tiles(((t, np.asarray(pred[i])) for i, t in enumerate(tiles)), opts)

    counts: dict = {}

    def counted(items):
        for b in items:
            counts[b.tile] = counts.get(b.tile, 0) + 1
            yield b

    # Timed without the allocation tracer (it slows Python down), then once more under it.
    started, cpu = time.perf_counter(), time.process_time()
    n = write_geojson(counted(buildings()), out)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    tracemalloc.start()
    write_geojson(buildings(), out)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"tiles": len(tiles), "buildings": n, "seconds": seconds, "tiles_per_s": len(tiles) / seconds, "cpu_s": cpu,
            "peak_mib": peak / 2**20, "tiles_with_buildings": len(counts)}


def truth_buildings(tiles, truth_path: Path, out: Path) -> int:
    """The world's buildings: regions of the truth masks, stitched, exact pixel edges."""
    truth = np.load(truth_path, mmap_mode="r")
    stitcher = Stitcher(OutlineOptions(simplify=0, min_area_m2=5.0))

    def items():
        for i, (z, x, y) in enumerate(tiles):
            yield from stitcher.add(tile_pieces(np.asarray(truth[i], dtype=np.float32), z, x, y))
        yield from stitcher.finish()

    return write_geojson(items(), out)


def gap_check(tiles, pred_path: Path, truth_path: Path) -> dict:
    """The mapping gap with a known answer (see the module docstring)."""
    pred = read_polygons(pred_path).lonlat()
    truth = read_polygons(truth_path).lonlat()
    mapped = truth[np.arange(len(truth)) % 4 != 0]
    found = {(r["x"], r["y"]): r for r in mapping_gap(pred, mapped, tiles=tiles)}
    true = {(r["x"], r["y"]): r for r in mapping_gap(truth, mapped, tiles=tiles)}
    errors = [100 * abs(found[k]["completeness"] - true[k]["completeness"]) for k in found
              if found[k]["predicted_area_m2"] > 0 and true[k]["predicted_area_m2"] > 0]
    whole_found, whole_true = gap_summary(list(found.values())), gap_summary(list(true.values()))
    return {"tiles": len(errors), "median": float(np.median(errors)), "p90": float(np.percentile(errors, 90)),
            "max": float(np.max(errors)), "found": whole_found["completeness"], "true": whole_true["completeness"],
            "removed_share": 1 - whole_true["completeness"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--source", choices=["truth", "model"], default="truth")
    ap.add_argument("--head", choices=["binary", "sdt"], default="binary", help="for --source truth")
    ap.add_argument("--world", choices=["current", "classic"], default="current")
    ap.add_argument("--regularise", action="store_true")
    ap.add_argument("--workers", type=int, default=1, help="processes for per-tile labelling and tracing")
    ap.add_argument("--cache", type=Path, help="keep the rendered predictions in this folder and reuse them")
    args = ap.parse_args(argv)
    tiles = demo_tiles()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if args.cache is not None:
            folder = args.cache / f"{args.world}-{args.source}-{args.head}"
            folder.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        if (folder / "head").exists():
            head = (folder / "head").read_text()
            print(f"reusing the {len(tiles)} rendered tiles in {folder}")
        else:
            _, _, head = render(tiles, args.source, args.head, folder, args.world)
            (folder / "head").write_text(head)
            print(f"rendered {len(tiles)} tiles ({args.world} world, {args.source}, {head} head) in {time.perf_counter() - t0:.1f} s "
                  "(not timed below)")
        opts = OutlineOptions(head=head, regularise=args.regularise)
        quarter = [t for t in tiles if t[2] < tiles[0][2] + (tiles[-1][2] - tiles[0][2] + 1) // 4]
        small = run(quarter, folder / "pred.npy", opts, folder / "q.geojson", args.workers)
        full = run(tiles, folder / "pred.npy", opts, folder / "pred.geojson", args.workers)
        truth_n = truth_buildings(tiles, folder / "truth.npy", folder / "truth.geojson")
        score = evaluate_polygons(folder / "pred.geojson", folder / "truth.geojson", iou=0.5)
        gap = gap_check(tiles, folder / "pred.geojson", folder / "truth.geojson")
    print(f"options: {opts}")
    for name, r in (("first quarter", small), ("all", full)):
        print(f"{name:>13}: {r['tiles']} tiles, {r['buildings']} buildings in {r['seconds']:.2f} s = "
              f"{r['tiles_per_s']:.0f} tiles/s (main process CPU {r['cpu_s']:.2f} s), peak traced memory {r['peak_mib']:.1f} MiB (workers={args.workers})")
    print(f"object scores vs {truth_n} truth buildings (IoU >= 0.5): tp {score['tp']} fp {score['fp']} fn {score['fn']} "
          f"precision {score['precision']:.3f} recall {score['recall']:.3f} f1 {score['f1']:.3f}")
    print(f"mapping gap, every fourth world building removed ({gap['removed_share']:.3f} of the area): completeness "
          f"found {gap['found']:.3f}, true {gap['true']:.3f}; per tile ({gap['tiles']} tiles) error median "
          f"{gap['median']:.2f} points, 90th percentile {gap['p90']:.2f}, max {gap['max']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
