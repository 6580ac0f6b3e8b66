"""Model throughput with and without XLA and mixed precision, on this machine's device, in one
process: the same batches of tiles through the shipped model set up four ways
(``Segmenter.accelerated``). Prints tiles/s and the ratio to the plain model, and whether the
masks agree with the plain model's.

    .venv/bin/python benchmarks/accelerator_benchmark.py [--batch-size 32] [--batches 6]

The worker turns these on with LG_XLA / LG_MIXED_PRECISION (default off: on CPUs both are
slower; on GPUs measure first).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from looking_glass.datasets.synthetic import render_tile
from looking_glass.model.segmenter import Segmenter


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--batches", type=int, default=6)
    args = parser.parse_args()
    import tensorflow as tf

    device = "GPU: " + tf.config.list_physical_devices("GPU")[0].name if tf.config.list_physical_devices("GPU") else "CPU"
    images = np.stack([render_tile(18, 100_000 + i, 90_000)[0] for i in range(args.batch_size)])
    plain = Segmenter.load()
    reference = plain.predict_masks(images)
    print(f"{device}; model {plain.info.model_id}; batch {args.batch_size} x {args.batches} batches")
    baseline = None
    for name, options in (("plain", {}), ("xla", {"xla": True}), ("mixed_float16", {"mixed_precision": True}),
                          ("xla + mixed_float16", {"xla": True, "mixed_precision": True})):
        segmenter = plain.accelerated(**options) if options else plain
        start = time.perf_counter()
        masks = segmenter.predict_masks(images)  # first call: tracing / XLA compilation
        first = time.perf_counter() - start
        start = time.perf_counter()
        for _ in range(args.batches):
            segmenter.predict_masks(images)
        rate = args.batches * args.batch_size / (time.perf_counter() - start)
        baseline = baseline or rate
        agree = float((masks == reference).mean())
        print(f"  {name:<22}{rate:>8.1f} tiles/s  {rate / baseline:>5.2f}x plain   first call {first:5.1f} s   "
              f"mask pixels agreeing with plain {agree:.4f}")


if __name__ == "__main__":
    main()
