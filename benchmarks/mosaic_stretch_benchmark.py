"""Does a mosaic's radiometry depend on how the scene was cut into files? (issue 18)

Cuts one GeoTIFF (default: the SpaceNet sample, 900 x 900 px, 16-bit panchromatic) into two
overlapping GeoTIFFs (a west and an east part, written with rasterio windows: the same pixels,
grid and nodata), opens the two as a list mosaic and the whole file as one source, and runs the
shipped model (``Segmenter.load()``, as the worker does: the sdt head's distance > 0, else the
mask) on every zoom-18 tile of the image's footprint read from each. Prints, per tile, the
building area (m2, ``building_area_m2`` as the worker stores it) from the whole file and from the
mosaic, and then the largest pixel difference (DN) and the largest area differences.

Run it with the code to measure first on the path, e.g. before and after a change:

    PYTHONPATH=$PWD .venv/bin/python benchmarks/mosaic_stretch_benchmark.py [--image IMG.tif] [--overlap 100] [--json]

With ``--json`` the last line is one JSON object: tiles, max_dn_diff, max_area_diff_m2,
max_rel_area_diff (over tiles with at least ``--min-area`` m2 in the whole-file run),
total_area_whole_m2, total_area_mosaic_m2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "tests" / "data" / "spacenet_atlanta_sample" / "image.tif"


def cut_in_two(image: Path, out: Path, overlap: int) -> list[Path]:
    """The west and east parts of ``image`` (columns [0, w/2 + overlap/2) and [w/2 - overlap/2, w)),
    written as GeoTIFFs under ``out`` with the same profile (grid, CRS, nodata)."""
    import rasterio
    from rasterio.windows import Window

    parts = []
    with rasterio.open(image) as src:
        half = src.width // 2
        for name, c0, c1 in (("west", 0, half + overlap // 2), ("east", half - overlap // 2, src.width)):
            win = Window(c0, 0, c1 - c0, src.height)
            profile = {**src.profile, "width": c1 - c0, "height": src.height, "transform": src.window_transform(win)}
            path = out / f"{name}.tif"
            with rasterio.open(path, "w", **profile) as dst:
                dst.write(src.read(window=win))
            parts.append(path)
    return parts


def tiles_of(source) -> list[tuple[int, int, int]]:
    """Every zoom-18 tile of the source's footprint."""
    from looking_glass.imagery.geotiff import lonlat_footprint
    from looking_glass.tiling.cover import iter_tiles, tile_runs

    return list(iter_tiles(tile_runs(lonlat_footprint(source.outline))))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", type=Path, default=SAMPLE, help="the GeoTIFF to cut (default: the SpaceNet sample)")
    parser.add_argument("--overlap", type=int, default=100, help="columns the two parts share (default 100)")
    parser.add_argument("--min-area", type=float, default=100.0, help="tiles counted in max_rel_area_diff (m2, whole-file run)")
    parser.add_argument("--json", action="store_true", help="end with one JSON line")
    args = parser.parse_args()

    from looking_glass.imagery.mosaic import open_geotiff_source
    from looking_glass.model.segmenter import Segmenter, building_area_m2

    segmenter = Segmenter.load()

    def areas(tiles: list) -> list[float]:
        images = np.stack([t.image for t in tiles])
        if segmenter.info.head == "sdt":
            masks = segmenter.predict_raw(images)[..., 0] > 0
        else:
            masks = segmenter.predict_masks(images)
        return [building_area_m2(m, t.x, t.y, t.z) for m, t in zip(masks, tiles)]

    with tempfile.TemporaryDirectory() as tmp:
        parts = cut_in_two(args.image, Path(tmp), args.overlap)
        with open_geotiff_source(str(args.image)) as whole, open_geotiff_source([str(p) for p in parts]) as mosaic:
            pairs = [(whole.fetch(*t), mosaic.fetch(*t)) for t in tiles_of(whole)]
    pairs = [(a, b) for a, b in pairs if a.image is not None and b.image is not None]
    if not pairs:
        print("no tile holds imagery in both runs", file=sys.stderr)
        return 1
    area_whole = areas([a for a, _ in pairs])
    area_mosaic = areas([b for _, b in pairs])
    dn = [int(np.abs(a.image.astype(int) - b.image.astype(int)).max()) for a, b in pairs]
    print(f"model {segmenter.info.model_id}; {args.image.name} cut into two parts sharing {args.overlap} columns; "
          f"{len(pairs)} tiles; load {os.getloadavg()[0]:.1f}")
    print(f"{'tile':>18} {'whole m2':>9} {'mosaic m2':>9} {'diff':>7} {'max DN':>6}")
    for (a, _), w, m, d in zip(pairs, area_whole, area_mosaic, dn):
        rel = f"{(m - w) / w:+.1%}" if w >= args.min_area else "-"
        print(f"{f'{a.z}/{a.x}/{a.y}':>18} {w:9.1f} {m:9.1f} {rel:>7} {d:6d}")
    diffs = np.abs(np.array(area_mosaic) - np.array(area_whole))
    big = np.array(area_whole) >= args.min_area
    summary = {
        "tiles": len(pairs),
        "max_dn_diff": max(dn),
        "max_area_diff_m2": round(float(diffs.max()), 2),
        "max_rel_area_diff": round(float((diffs[big] / np.array(area_whole)[big]).max()), 4) if big.any() else None,
        "total_area_whole_m2": round(sum(area_whole), 1),
        "total_area_mosaic_m2": round(sum(area_mosaic), 1),
        "overlap_columns": args.overlap,
        "load_1min": round(os.getloadavg()[0], 1),
    }
    print("; ".join(f"{k} {v}" for k, v in summary.items()))
    if args.json:
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
