"""Pixel IoU of a model on freshly rendered tiles of one synthetic world.

    python benchmarks/world_eval.py [--model PATH] [--world demo|randomised] [--tiles 200] [--seed 0]
        [--thresholds 0.3,0.4,0.5]

``looking-glass evaluate --synthetic N`` scores the demo world (what the demo and the tile server
show); this scores either world with the same tile window and seed rule
(``looking_glass.training.evaluate.EVAL_X_RANGE``/``EVAL_Y_RANGE``, disjoint from the training
window of ``synth-data``), so the randomised world's score is as comparable as the demo world's.

``--thresholds`` (binary head) adds, for each probability threshold, the pixel IoU and the ratio of
predicted to true building pixels (``area_ratio``): how the shipped model's threshold was chosen
(its sidecar's ``threshold_choice``), on a seed the reported figures do not use.
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="", help="Keras model with its .json sidecar (default: shipped)")
    parser.add_argument("--world", choices=("demo", "randomised"), default="randomised")
    parser.add_argument("--tiles", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--thresholds", type=_thresholds, default=(),
                        help="comma-separated probabilities in (0, 1), e.g. 0.3,0.4,0.5 (binary head)")
    args = parser.parse_args(argv)

    from looking_glass.datasets.synthetic import render_world_tile
    from looking_glass.model.segmenter import Segmenter
    from looking_glass.training.evaluate import EVAL_X_RANGE, EVAL_Y_RANGE, evaluate

    rng = np.random.default_rng(args.seed)  # the same tiles as evaluate --synthetic with this seed
    tiles = [(int(rng.integers(*EVAL_X_RANGE)), int(rng.integers(*EVAL_Y_RANGE))) for _ in range(args.tiles)]
    started = time.perf_counter()
    rendered = [render_world_tile(args.world, 18, x, y) for x, y in tiles]
    render_ms = (time.perf_counter() - started) / len(tiles) * 1000
    images = np.stack([r[0] for r in rendered])
    masks = np.stack([r[1] for r in rendered]).astype(np.uint8)
    segmenter = Segmenter.load(args.model)
    if args.thresholds and segmenter.info.head != "binary":
        parser.error(f"--thresholds needs a binary-head model; this one's head is {segmenter.info.head}")
    result = evaluate(segmenter, images, masks)
    result.update(world=args.world, seed=args.seed, render_ms_per_tile=round(render_ms, 1))
    if args.thresholds:
        raw = np.concatenate([segmenter.predict_raw(images[i:i + 32])[..., 0] for i in range(0, len(images), 32)])
        truth = masks.astype(bool)
        result["by_threshold"] = {
            f"{t:g}": {"iou": round(float((p & truth).sum() / max(1, (p | truth).sum())), 4),
                       "area_ratio": round(float(p.sum() / max(1, truth.sum())), 3)}
            for t in args.thresholds for p in [raw >= t]}
    print(json.dumps(result, indent=2))
    return result


def _thresholds(text: str) -> tuple[float, ...]:
    """``--thresholds``: comma-separated probabilities strictly between 0 and 1."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of numbers: {text!r}") from None
    if not values or not all(0 < v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"every threshold must lie strictly between 0 and 1: {text!r}")
    return values


if __name__ == "__main__":
    main()
