"""Keras (TensorFlow) against ONNX Runtime on the same model, the same batches, in one run.

    .venv/bin/python benchmarks/inference_runtime_benchmark.py [--configs shipped,mobilenetv2,xception]
        [--threads N] [--tiles-per-run N] [--ablation] [--rounds 5] [--json]

For each configuration: the Keras model (the shipped one; the full-size ones with random
weights, ``weights=None``: speed does not depend on the weights) is exported to ONNX in memory
(:func:`looking_glass.model.onnx_export.convert`), then the same uint8 synthetic tiles run
through

- ``keras``: the segmenter's Keras path (``predict_on_batch``),
- ``keras_tf_function``: a ``tf.function`` of the model (TensorFlow's fastest plain call),
- ``onnx``: ONNX Runtime with the provider the segmenter would pick, ``--threads`` intra-op
  threads (default: TensorFlow's own thread count, so the two use the same cores) and the
  segmenter's tiles per run (``--tiles-per-run``; 0: its default, 2 on CPUs),

and with ``--ablation`` also ``onnx_whole_batch`` (the same export, the whole batch in one run)
and ``onnx_before`` (the export without :mod:`looking_glass.model.onnx_graph`'s rewrite, whole
batch: ONNX Runtime as it ran before issue 19's changes),
taking turns batch by batch (``--rounds`` batches each, after a warm-up batch). Printed: the
best batch's tiles/s of each (what survives other processes on a shared machine; the medians
are in the JSON), ONNX over Keras, max |ONNX - Keras| of the raw outputs and the fraction of
mask pixels that agree. ``--json`` ends with one JSON line: ``keras_tiles_per_s``,
``onnx_tiles_per_s``, ``onnx_over_keras``, ``mask_agreement``, ``max_abs_diff`` of the shipped
model and ``configs`` with the same per configuration.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np

CONFIGS = {
    # name: (ModelConfig fields or None for the shipped model, batch size)
    "shipped": (None, 32),
    "mobilenetv2": ({"backbone": "mobilenetv2", "alpha": 1.0, "output_stride": 16}, 8),
    "xception": ({"backbone": "xception", "alpha": 1.0, "output_stride": 16}, 8),
}


def _interleaved(runs: dict, images: np.ndarray, rounds: int, seconds: float) -> tuple[dict, dict]:
    """Per runtime of ``runs`` (name -> callable): (best, median) tiles/s of single batches, how
    many batches, and the median CPU milliseconds (this process, all threads) per tile, the
    runtimes taking turns batch by batch for ``rounds`` rounds (and at least ``seconds``), after a
    warm-up batch each; and each runtime's outputs. Best-of is what survives other processes on
    a shared machine; taking turns gives each runtime the same share of the noise; CPU time is
    the work done, which other processes change least (spinning threads count in it)."""
    outputs = {name: run(images) for name, run in runs.items()}
    times = {name: [] for name in runs}
    cpu = {name: [] for name in runs}
    start = time.perf_counter()
    while min(len(t) for t in times.values()) < rounds or time.perf_counter() - start < seconds:
        for name, run in runs.items():
            c0, t0 = time.process_time(), time.perf_counter()
            run(images)
            times[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    n = len(images)
    return {name: (n / min(t), n / float(np.median(t)), len(t), 1000 * float(np.median(cpu[name])) / n)
            for name, t in times.items()}, outputs


def bench(name: str, fields, batch: int, threads: int, rounds: int, seconds: float, tiles_per_run: int = 0,
          ablation: bool = False) -> dict:
    import keras
    import tensorflow as tf

    from looking_glass.model.deeplab import ModelConfig, build_deeplabv3plus
    from looking_glass.model.inference import OnnxRunner
    from looking_glass.model.onnx_export import compare_outputs, convert, sample_tiles
    from looking_glass.model.segmenter import SHIPPED_MODEL, load_metadata

    if fields is None:
        meta = load_metadata(SHIPPED_MODEL)
        model = keras.saving.load_model(SHIPPED_MODEL, compile=False)
        cfg, threshold, label = meta["config"], float(meta.get("threshold", 0.5)), meta["model_id"]
    else:
        keras.utils.set_random_seed(0)
        config = ModelConfig(**fields)
        model = build_deeplabv3plus(config)
        cfg, threshold = config.to_dict(), 0.5
        label = f"{config.backbone} x{config.alpha:g} OS{config.output_stride} (random weights)"
    size = int(cfg.get("input_size", 256))
    started = time.perf_counter()
    onnx_bytes = convert(model, size)
    convert_s = time.perf_counter() - started
    tmp = f"/tmp/runtime_benchmark_{os.getpid()}_{name}.onnx"
    before = tmp.replace(".onnx", "_before.onnx")
    with open(tmp, "wb") as f:
        f.write(onnx_bytes)
    try:
        runner = OnnxRunner(tmp, threads=threads, tiles_per_run=tiles_per_run or None)
        images = sample_tiles(batch, size).astype(np.float32)
        fn = tf.function(lambda x: model(x, training=False))
        runs = {
            "keras": lambda x: np.asarray(model.predict_on_batch(x)),
            "keras_tf_function": lambda x: fn(x).numpy(),
            "onnx": runner,
        }
        if ablation:  # what each change of issue 19 gives: the whole batch per run, and no rewrite either
            with open(before, "wb") as f:
                f.write(convert(model, size, rewrite=False))
            runs["onnx_whole_batch"] = OnnxRunner(tmp, threads=threads, tiles_per_run=batch)
            runs["onnx_before"] = OnnxRunner(before, threads=threads, tiles_per_run=batch)
        speeds, outputs = _interleaved(runs, images, rounds, seconds)
        keras_out, onnx_out = outputs["keras"], outputs["onnx"]
    finally:
        for path in (tmp, before):
            if os.path.exists(path):
                os.unlink(path)
    check = compare_outputs(keras_out, onnx_out, cfg.get("head", "binary"), threshold)
    return {
        "model": label,
        "batch": batch,
        "keras_tiles_per_s": round(speeds["keras"][0], 2),
        "keras_tf_function_tiles_per_s": round(speeds["keras_tf_function"][0], 2),
        "onnx_tiles_per_s": round(speeds["onnx"][0], 2),
        "onnx_over_keras": round(speeds["onnx"][0] / speeds["keras"][0], 2),
        "onnx_over_tf_function": round(speeds["onnx"][0] / speeds["keras_tf_function"][0], 2),
        "median_keras_tiles_per_s": round(speeds["keras"][1], 2),
        "median_onnx_tiles_per_s": round(speeds["onnx"][1], 2),
        "median_onnx_over_keras": round(speeds["onnx"][1] / speeds["keras"][1], 2),
        "batches_timed": speeds["onnx"][2],
        "max_abs_diff": check["max_abs_diff"],
        "mask_agreement": check["mask_agreement"],
        "provider": runner.provider,
        "onnx_threads": runner.threads,
        "onnx_tiles_per_run": runner.tiles_per_run,
        "cpu_ms_per_tile": {k: round(v[3], 2) for k, v in speeds.items()},
        "convert_seconds": round(convert_s, 1),
        **({"ablation": {k: {"tiles_per_s": round(speeds[k][0], 2), "median_tiles_per_s": round(speeds[k][1], 2),
                             "median_over_keras": round(speeds[k][1] / speeds["keras"][1], 2),
                             "max_abs_diff": compare_outputs(keras_out, outputs[k], cfg.get("head", "binary"),
                                                             threshold)["max_abs_diff"]}
                         for k in ("onnx_whole_batch", "onnx_before")}} if ablation else {}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", default="shipped,mobilenetv2", help=f"comma-separated, of {list(CONFIGS)}")
    parser.add_argument("--threads", type=int, default=0, help="ONNX Runtime intra-op threads (0: as TensorFlow)")
    parser.add_argument("--tiles-per-run", type=int, default=0,
                        help="ONNX Runtime tiles per session run (0: the segmenter's default)")
    parser.add_argument("--ablation", action="store_true",
                        help="also time ONNX Runtime with the whole batch per run, and the export without the head rewrite")
    parser.add_argument("--rounds", type=int, default=5, help="least batches timed per runtime (default %(default)s)")
    parser.add_argument("--seconds", type=float, default=0.0, help="least seconds of taking turns per model")
    parser.add_argument("--json", action="store_true", help="end with one JSON line of the figures")
    args = parser.parse_args()
    if args.tiles_per_run < 0:
        parser.error(f"--tiles-per-run must be 0 (the default) or more, got {args.tiles_per_run}")
    names = [n.strip() for n in args.configs.split(",") if n.strip()]
    unknown = [n for n in names if n not in CONFIGS]
    if unknown or not names:
        parser.error(f"--configs: unknown {unknown or 'empty list'}; choose from {list(CONFIGS)}")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import onnxruntime
    import tensorflow as tf

    threads = args.threads or len(os.sched_getaffinity(0))
    print(f"{len(os.sched_getaffinity(0))} CPUs ({platform.processor() or platform.machine()}); TensorFlow "
          f"{tf.__version__} (intra-op {tf.config.threading.get_intra_op_parallelism_threads() or 'default'}), "
          f"ONNX Runtime {onnxruntime.__version__} ({threads} threads)", flush=True)
    print("tiles/s, best batch of each runtime, taking turns:")
    print(f"{'model':48} {'batch':>5} {'keras':>8} {'tf.fn':>8} {'onnx':>8} {'ratio':>6} {'max|diff|':>9} {'masks':>8}")
    figures = {}
    for name in names:
        fields, batch = CONFIGS[name]
        r = bench(name, fields, batch, threads, args.rounds, args.seconds, args.tiles_per_run, args.ablation)
        figures[name] = r
        print(f"{r['model'][:48]:48} {batch:>5} {r['keras_tiles_per_s']:>8.1f} {r['keras_tf_function_tiles_per_s']:>8.1f} "
              f"{r['onnx_tiles_per_s']:>8.1f} {r['onnx_over_keras']:>5.2f}x {r['max_abs_diff']:>9.2g} "
              f"{r['mask_agreement']:>8.6f}  ({r['provider']})", flush=True)
        for k, a in r.get("ablation", {}).items():
            print(f"  {k:46} {a['tiles_per_s']:>8.1f} tiles/s best, median {a['median_over_keras']:.2f}x Keras' median", flush=True)
    if args.json:
        head = figures.get("shipped") or next(iter(figures.values()))
        keys = ("keras_tiles_per_s", "onnx_tiles_per_s", "onnx_over_keras", "mask_agreement", "max_abs_diff")
        print(json.dumps({**{k: head[k] for k in keys}, "configs": figures}))


if __name__ == "__main__":
    main()
