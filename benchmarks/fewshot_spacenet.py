"""Few-shot fine-tuning on real imagery: the SpaceNet Atlanta sample cut in a western and an
eastern half; fine-tune the shipped model on the west, score it on the east.

    .venv/bin/python benchmarks/fewshot_spacenet.py [--work DIR] [--skip-train]

Steps (each a ``looking-glass`` command, timed):

1. cut ``tests/data/spacenet_atlanta_sample/image.tif`` at its middle column into ``west.tif`` and
   ``east.tif`` (rasterio windows, georeferencing kept) and split ``buildings.geojson`` by the
   same line: a footprint goes to the half that holds its centroid, clipped to that half;
2. ``prepare --mode tiles --max-nodata 0.8`` each half (WEST: every chip a training chip,
   ``--val-fraction 0``: 12 tiles are too few to hold some out; EAST: every chip a validation
   chip, ``--val-fraction 1``, so that ``evaluate --data EAST`` scores all of it);
3. ``evaluate --data EAST`` with the shipped model (before);
4. ``train --local --data WEST --root RUN --init shipped`` with no other options;
5. ``evaluate --model RUN/model/model.keras --data EAST`` (after).

Prints the shipped model's id/version, IoU before and after, the wall times and the load
average (1, 5, 15 min) before and after training: the 15-minute budget is for an idle 2-core machine. The sample is
never part of a shipped model's training data: the fine-tuned model stays in the work folder.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "tests" / "data" / "spacenet_atlanta_sample"
CLI = [sys.executable, "-m", "looking_glass.cli.main"]
# Keep the tiles that the half covers in part (the half is ~1.8 tiles wide): up to 80 % no-data.
MAX_NODATA = "0.8"


def cut_halves(work: Path) -> dict:
    """west.tif/east.tif and west.geojson/east.geojson in ``work``; returns a summary."""
    import rasterio
    from rasterio.windows import Window
    from rasterio.windows import transform as window_transform
    from shapely.geometry import box, mapping, shape

    features = json.loads((SAMPLE / "buildings.geojson").read_text())
    out = {}
    with rasterio.open(SAMPLE / "image.tif") as src:
        mid = src.width // 2
        for name, col0, width in (("west", 0, mid), ("east", mid, src.width - mid)):
            window = Window(col0, 0, width, src.height)
            profile = {**src.profile, "width": width, "height": src.height,
                       "transform": window_transform(window, src.transform)}
            profile.pop("blockxsize", None), profile.pop("blockysize", None)
            profile["tiled"] = False
            with rasterio.open(work / f"{name}.tif", "w", **profile) as dst:
                dst.write(src.read(window=window))
            left, bottom, right, top = rasterio.windows.bounds(window, src.transform)
            half = box(left, bottom, right, top)
            kept = []
            for f in features["features"]:
                geom = shape(f["geometry"])
                if half.contains(geom.centroid):
                    kept.append({**f, "geometry": mapping(geom.intersection(half))})
            fc = {k: v for k, v in features.items() if k != "features"}
            fc["features"] = kept
            (work / f"{name}.geojson").write_text(json.dumps(fc))
            out[name] = {"columns": [col0, col0 + width], "footprints": len(kept)}
    return out


def cli(*args: str) -> str:
    """Run ``looking-glass ARGS`` (output streamed to stderr); returns its stdout."""
    proc = subprocess.run([*CLI, *args], cwd=REPO, stdout=subprocess.PIPE, text=True)
    if proc.returncode:
        sys.stderr.write(proc.stdout)
        raise SystemExit(f"looking-glass {' '.join(args)} failed with exit code {proc.returncode}")
    return proc.stdout


def evaluate(model: str | None, data: Path) -> dict:
    args = ["evaluate", "--data", str(data)] + (["--model", model] if model else [])
    out = cli(*args)
    return json.loads(out[out.index("{"):])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", help="work folder (default: a new temporary one)")
    parser.add_argument("--skip-train", action="store_true", help="only cut, prepare and score the shipped model")
    parser.add_argument("--init", default="shipped",
                        help="the model to start from, as train --init takes it (default: shipped); a candidate "
                             "for the next shipped model is scored before and after the same way")
    args = parser.parse_args(argv)
    work = Path(args.work or tempfile.mkdtemp(prefix="lg-fewshot-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    shipped = json.loads((REPO / "looking_glass/model/shipped/deeplabv3plus_synthetic.json").read_text())
    print(f"work folder: {work}")
    print(f"shipped model: {shipped['model_id']} version {shipped['version']} "
          f"(created {shipped.get('created') or shipped.get('training', {}).get('finished')})")
    halves = cut_halves(work)
    print(f"halves: {json.dumps(halves)}")
    for name, val in (("west", "0"), ("east", "1")):
        print(cli("prepare", "--images", str(work / f"{name}.tif"), "--footprints", str(work / f"{name}.geojson"),
                  "--out", str(work / name.upper()), "--mode", "tiles", "--val-fraction", val,
                  "--max-nodata", MAX_NODATA, "--overwrite").strip().splitlines()[-1])
    before = evaluate(None if args.init == "shipped" else args.init, work / "EAST")
    print(f"before ({args.init}) on EAST: IoU {before['iou']:.4f} F1 {before['f1']:.4f} ({before['tiles']} tiles)")
    if args.skip_train:
        return 0
    run = work / "RUN"
    load_before = os.getloadavg()
    started = time.monotonic()
    train = subprocess.run([*CLI, "train", "--local", "--data", str(work / "WEST"), "--root", str(run),
                            "--init", args.init], cwd=REPO)
    train_s = time.monotonic() - started
    if train.returncode:
        raise SystemExit(f"train failed with exit code {train.returncode}")
    after = evaluate(str(run / "model" / "model.keras"), work / "EAST")
    total_s = time.monotonic() - started
    print(json.dumps({"shipped": {"model_id": shipped["model_id"], "version": shipped["version"]}, "init": args.init,
                      "halves": halves, "iou_before": before["iou"], "iou_after": after["iou"],
                      "f1_before": before["f1"], "f1_after": after["f1"], "east_tiles": after["tiles"],
                      "train_seconds": round(train_s, 1), "train_and_evaluate_seconds": round(total_s, 1),
                      "cpus": os.cpu_count(), "load_average_before": [round(v, 2) for v in load_before],
                      "load_average_after": [round(v, 2) for v in os.getloadavg()]}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
