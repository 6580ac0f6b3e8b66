"""Tune the fine-tuning defaults without looking at the east: two folds inside the WEST chips.

    .venv/bin/python benchmarks/fewshot_tune.py WEST --fold NS|SN --root RUN [--hyperparameters JSON]

``WEST`` is the benchmark's prepared western half (``benchmarks/fewshot_spacenet.py --work DIR
--skip-train`` writes ``DIR/WEST``: 12 zoom-18 tiles, 3 columns x 4 rows). Its chips are split by
tile row: north (the two upper rows) and south (the two lower ones). Fold ``NS`` fine-tunes the
shipped model on the north and validates on the south, ``SN`` the other way round, with
``train --local --init shipped`` and the fine-tuning defaults, except that early stopping and the
best epoch are off (``patience 0``, ``restore_best false``): as in the benchmark, whose WEST has
no validation chips, the last epoch is the model. The validation chips only score each epoch
(``val_iou`` in the log). ``--hyperparameters`` adds or overrides keys (the variant tried).

Prints the fold's chips, the train command's log, and the last epoch's IoU on the fold's train
and validation chips. The EAST half is never read.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "looking_glass.cli.main"]


def split_west(west: Path, fold: str, out: Path) -> dict:
    """A prepared dataset in ``out``: ``fold`` NS = north train / south validation, SN the reverse."""
    manifest = json.loads((west / "manifest.json").read_text())
    shards = sorted((west / "train").glob("shard-*.npz"))
    if not shards:
        raise SystemExit(f"{west} has no train chips: prepare WEST with --val-fraction 0 (fewshot_spacenet.py)")
    arrays = {}
    for shard in shards:
        with np.load(shard) as z:
            for key in z.files:
                arrays.setdefault(key, []).append(z[key])
    arrays = {k: np.concatenate(v) for k, v in arrays.items()}
    try:
        rows = np.array([int(str(i).rsplit("_", 1)[1]) for i in arrays["chip_ids"]])
    except (IndexError, ValueError):
        raise SystemExit(f"{west}: chip ids are not <image>_<zoom>_<x>_<y> tiles (prepare --mode tiles)") from None
    if len(np.unique(rows)) < 2:
        raise SystemExit(f"{west}: the chips lie on one tile row: no north and south to split")
    north = rows < np.median(np.unique(rows))
    train = north if fold == "NS" else ~north
    if out.exists():
        shutil.rmtree(out)
    for split, keep in (("train", train), ("validation", ~train)):
        (out / split).mkdir(parents=True)
        np.savez_compressed(out / split / "shard-00000.npz", **{k: v[keep] for k, v in arrays.items()})
    counts = {"train": int(train.sum()), "validation": int((~train).sum())}
    manifest["counts"] = counts
    manifest["shards"] = {s: [{"file": f"{s}/shard-00000.npz", "chips": n}] for s, n in counts.items()}
    (out / "manifest.json").write_text(json.dumps(manifest))
    return {s: [str(i) for i in arrays["chip_ids"][keep]] for s, keep in (("train", train), ("validation", ~train))}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("west", help="the benchmark's prepared WEST dataset")
    parser.add_argument("--fold", choices=("NS", "SN"), required=True, help="NS: train north, validate south; SN: reverse")
    parser.add_argument("--root", required=True, help="the training root (its data/ holds the fold's dataset)")
    parser.add_argument("--hyperparameters", default="{}", help="JSON object of keys to add or override")
    parser.add_argument("--init", default="shipped", help="the model to start from, as train --init takes it")
    args = parser.parse_args(argv)
    try:
        extra = json.loads(args.hyperparameters)
    except ValueError as e:
        parser.error(f"--hyperparameters is not JSON: {e}")
    if not isinstance(extra, dict):
        parser.error("--hyperparameters must be a JSON object")
    west, root = Path(args.west).resolve(), Path(args.root).resolve()
    if not (west / "manifest.json").is_file():
        parser.error(f"{west} is not a prepared dataset (no manifest.json)")
    data = root.parent / f"{root.name}-data"
    chips = split_west(west, args.fold, data)
    print(f"fold {args.fold}: train {chips['train']}, validation {chips['validation']}", flush=True)
    hp = {"patience": 0, "restore_best": False, **extra}
    code = subprocess.run([*CLI, "train", "--local", "--data", str(data), "--root", str(root), "--init", args.init,
                           "--hyperparameters", json.dumps(hp)], cwd=REPO).returncode
    if code:
        raise SystemExit(f"train failed with exit code {code}")
    scores = {}
    for split in ("train", "validation"):
        out = subprocess.run([*CLI, "evaluate", "--model", str(root / "model" / "model.keras"), "--data",
                              str(_single_split(data, split, root))], cwd=REPO, stdout=subprocess.PIPE, text=True)
        if out.returncode:
            raise SystemExit(f"evaluate failed with exit code {out.returncode}")
        scores[split] = json.loads(out.stdout[out.stdout.index("{"):])["iou"]
    print(json.dumps({"fold": args.fold, "init": args.init, "hyperparameters": hp, "iou_train": scores["train"],
                      "iou_validation": scores["validation"]}))
    return 0


def _single_split(data: Path, split: str, root: Path) -> Path:
    """``evaluate --data`` scores a dataset's validation chips: a copy whose validation is ``split``."""
    if split == "validation":
        return data
    view = root.parent / f"{root.name}-data-train"
    if view.exists():
        shutil.rmtree(view)
    (view / "validation").mkdir(parents=True)
    shutil.copy2(data / "train" / "shard-00000.npz", view / "validation" / "shard-00000.npz")
    manifest = json.loads((data / "manifest.json").read_text())
    manifest["counts"] = {"train": 0, "validation": manifest["counts"]["train"]}
    (view / "manifest.json").write_text(json.dumps(manifest))
    return view


if __name__ == "__main__":
    sys.exit(main())
