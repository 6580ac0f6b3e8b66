"""Pixel IoU of a model on freshly rendered tiles of one synthetic world.

    python benchmarks/world_eval.py [--model PATH] [--world demo|randomised] [--tiles 200] [--seed 0]

``looking-glass evaluate --synthetic N`` scores the demo world (what the demo and the tile server
show); this scores either world with the same tile window and seed rule
(``looking_glass.training.evaluate.EVAL_X_RANGE``/``EVAL_Y_RANGE``, disjoint from the training
window of ``synth-data``), so the randomised world's score is as comparable as the demo world's.
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
    result = evaluate(Segmenter.load(args.model), images, masks)
    result.update(world=args.world, seed=args.seed, render_ms_per_tile=round(render_ms, 1))
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
