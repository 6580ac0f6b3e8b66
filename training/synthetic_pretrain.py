"""Train the small DeepLab V3+ that ships with the package, on the synthetic world only.

    python -m training.synthetic_pretrain --out looking_glass/models/deeplabv3plus_synthetic.keras

Tiles come from ``looking_glass.synthetic.render_tile`` at zoom 18, from address ranges that do
not overlap the demo area (x ~152,900-153,000, y ~132,450-132,550): training from TRAIN_RANGE,
validation from VAL_RANGE. Rendering (~60-75 ms a tile) is done once in a process pool and cached
as an .npz under the cache directory (default /tmp), never in the repository.

Loss: binary cross-entropy + soft Dice; Adam with cosine decay; random flips and 90-degree
rotations. One line per epoch reports the validation loss, IoU, F1 and the relative error of the
total predicted building area. At the end the threshold that best matches the validation area
(0.3-0.7) is chosen, and the model is saved with a JSON sidecar (the keys that
``looking_glass.inference.Segmenter.load`` reads, plus training details and validation metrics).

The result is for the demo and the tests: it has never seen real imagery.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np

TRAIN_RANGE = {"x": (100_000, 101_000), "y": (90_000, 91_000)}
VAL_RANGE = {"x": (110_000, 111_000), "y": (95_000, 96_000)}
ZOOM = 18
CONFIG = {"alpha": 0.35, "aspp_filters": 32, "decoder_filters": 16, "head": "binary"}
MODEL_ID = "deeplabv3plus-mobilenetv2a035-synthetic"
BN_MOMENTUM = 0.9
THRESHOLDS = np.round(np.arange(0.30, 0.701, 0.05), 2)


def _render(address: tuple[int, int]):
    from looking_glass.synthetic import render_tile

    return render_tile(ZOOM, *address)


def tile_set(ranges: dict, n: int, seed: int, cache_dir: Path, workers: int):
    """n distinct random tiles from ranges: (images uint8 (n,256,256,3), masks bool (n,256,256))."""
    (x0, x1), (y0, y1) = ranges["x"], ranges["y"]
    cache = cache_dir / f"lg_synthetic_z{ZOOM}_x{x0}-{x1}_y{y0}-{y1}_n{n}_s{seed}.npz"
    if cache.exists():
        data = np.load(cache)
        return data["images"], data["masks"]
    rng = np.random.default_rng(seed)
    flat = rng.choice((x1 - x0) * (y1 - y0), size=n, replace=False)
    addresses = [(x0 + int(i) % (x1 - x0), y0 + int(i) // (x1 - x0)) for i in flat]
    with Pool(workers) as pool:
        tiles = pool.map(_render, addresses, chunksize=16)
    images = np.stack([t[0] for t in tiles])
    masks = np.stack([t[1] for t in tiles])
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(cache.stem + f".tmp{os.getpid()}.npz")
    np.savez(tmp, images=images, masks=masks)
    tmp.replace(cache)
    return images, masks


def augment(images: np.ndarray, masks: np.ndarray, rng: np.random.Generator):
    """Random flips and 90-degree rotations, the same for each image and its mask."""
    images, masks = images.copy(), masks.copy()
    for i in range(len(images)):
        k, flip = int(rng.integers(4)), bool(rng.integers(2))
        img, m = np.rot90(images[i], k), np.rot90(masks[i], k)
        if flip:
            img, m = img[:, ::-1], m[:, ::-1]
        images[i], masks[i] = img, m
    return images, masks


def bce_dice_loss(y_true, y_pred):
    from keras import ops

    eps = 1e-6
    y_pred = ops.clip(y_pred, eps, 1 - eps)
    bce = -ops.mean(y_true * ops.log(y_pred) + (1 - y_true) * ops.log(1 - y_pred))
    inter = ops.sum(y_true * y_pred)
    dice = 1 - (2 * inter + 1) / (ops.sum(y_true) + ops.sum(y_pred) + 1)  # over the whole batch
    return bce + dice


def predict(model, images: np.ndarray, batch: int = 32) -> np.ndarray:
    return np.concatenate(
        [np.asarray(model.predict_on_batch(images[i : i + batch].astype(np.float32)))[..., 0]
         for i in range(0, len(images), batch)]
    )


def numpy_loss(prob: np.ndarray, truth: np.ndarray) -> float:
    """bce_dice_loss over a whole set, in numpy."""
    p = np.clip(prob.astype(np.float64), 1e-6, 1 - 1e-6)
    bce = -np.mean(np.where(truth, np.log(p), np.log(1 - p)))
    return float(bce + 1 - (2 * np.sum(p[truth]) + 1) / (truth.sum() + p.sum() + 1))


def metrics(prob: np.ndarray, truth: np.ndarray, threshold: float) -> dict:
    pred = prob >= threshold
    tp = float(np.sum(pred & truth))
    fp = float(np.sum(pred & ~truth))
    fn = float(np.sum(~pred & truth))
    precision, recall = tp / max(tp + fp, 1), tp / max(tp + fn, 1)
    return {
        "iou": tp / max(tp + fp + fn, 1),
        "f1": 2 * tp / max(2 * tp + fp + fn, 1),
        "precision": precision,
        "recall": recall,
        "area_relative_error": (tp + fp) / max(tp + fn, 1) - 1,
    }


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="looking_glass/models/deeplabv3plus_synthetic.keras")
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train-tiles", type=int, default=2400)
    p.add_argument("--val-tiles", type=int, default=192)
    p.add_argument("--steps-per-epoch", type=int, default=100)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--cache-dir", default="/tmp/looking_glass_cache")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = p.parse_args(argv)

    started = time.time()
    cache_dir = Path(args.cache_dir)
    train_x, train_y = tile_set(TRAIN_RANGE, args.train_tiles, args.seed, cache_dir, args.workers)
    val_x, val_y = tile_set(VAL_RANGE, args.val_tiles, args.seed + 1, cache_dir, args.workers)
    print(f"tiles: train {len(train_x)} (building {train_y.mean():.3f}), val {len(val_x)} "
          f"(building {val_y.mean():.3f}), rendered/loaded in {time.time() - started:.0f}s", flush=True)

    import keras

    from looking_glass.model import ModelConfig, build_deeplabv3plus

    keras.utils.set_random_seed(args.seed)
    cfg = ModelConfig(**CONFIG)
    model = build_deeplabv3plus(cfg)
    # MobileNetV2's batch norms average over ~1000 steps (momentum 0.999): far too slow for a
    # run this short, whose inference-mode outputs would then be meaningless. Use ~10 steps.
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = BN_MOMENTUM
    schedule = keras.optimizers.schedules.CosineDecay(
        args.lr * 0.1, args.steps, alpha=0.01, warmup_target=args.lr, warmup_steps=min(100, args.steps // 10)
    )
    model.compile(optimizer=keras.optimizers.Adam(schedule), loss=bce_dice_loss)

    rng = np.random.default_rng(args.seed)
    train_started, step, losses = time.time(), 0, []
    while step < args.steps:
        for _ in range(min(args.steps_per_epoch, args.steps - step)):
            idx = rng.integers(len(train_x), size=args.batch_size)
            xb, yb = augment(train_x[idx], train_y[idx], rng)
            losses.append(float(model.train_on_batch(xb.astype(np.float32), yb[..., None].astype(np.float32))))
            step += 1
        prob = predict(model, val_x)
        m = metrics(prob, val_y, 0.5)
        print(f"epoch {step // args.steps_per_epoch:>3} step {step:>5} train_loss {np.mean(losses):.4f} "
              f"val_loss {numpy_loss(prob, val_y):.4f} val_iou {m['iou']:.4f} val_f1 {m['f1']:.4f} "
              f"val_area_err {m['area_relative_error']:+.4f} ({time.time() - train_started:.0f}s)", flush=True)
        losses = []
    train_seconds = time.time() - train_started

    # The threshold whose total predicted area best matches the truth on the validation set.
    by_threshold = {float(t): metrics(prob, val_y, t) for t in THRESHOLDS}
    threshold = min(by_threshold, key=lambda t: abs(by_threshold[t]["area_relative_error"]))
    final = {k: round(v, 4) for k, v in by_threshold[threshold].items()}
    print(f"threshold {threshold}: " + " ".join(f"{k} {v}" for k, v in final.items()), flush=True)

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    inference_model = keras.Model(model.input, model.output, name=model.name)  # uncompiled
    inference_model.save(out)
    meta = {
        "model_id": MODEL_ID,
        "version": "1",
        "trained": True,
        "description": "DeepLab V3+ (MobileNetV2 x0.35) trained on the synthetic world only: "
        "for the demo and tests, not for real imagery",
        "threshold": threshold,
        "config": cfg.to_dict(),
        "training": {
            "command": "python -m training.synthetic_pretrain " + " ".join(sys.argv[1:] if argv is None else argv),
            "steps": args.steps,
            "batch_size": args.batch_size,
            "seed": args.seed,
            "learning_rate": args.lr,
            "loss": "binary cross-entropy + soft Dice",
            "augmentation": "flips, 90-degree rotations",
            "zoom": ZOOM,
            "train_tiles": len(train_x),
            "train_range": TRAIN_RANGE,
            "val_tiles": len(val_x),
            "val_range": VAL_RANGE,
            "train_seconds": round(train_seconds, 1),
            "total_seconds": round(time.time() - started, 1),
            "keras": keras.__version__,
        },
        "validation": final,
    }
    out.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")
    print(f"saved {out} ({out.stat().st_size / 1e6:.1f} MB) and {out.with_suffix('.json')}", flush=True)
    return meta


if __name__ == "__main__":
    main()
