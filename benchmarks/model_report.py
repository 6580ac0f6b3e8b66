"""Parameters, FLOPs per 256x256 tile and CPU inference speed of the DeepLab V3+ variants.

    python benchmarks/model_report.py [--batches 3] [--batch-size 8] [--no-speed] [--profiler]
    python benchmarks/model_report.py --shipped [--batches 5]   # the shipped model only

``--shipped``: the trained model the package ships (looking_glass/model/shipped/), loaded from its
file: file size, parameters, FLOPs per tile and CPU tiles/s of ``Segmenter.predict_masks`` (what the
worker runs: model plus threshold), nothing else.

Variants: MobileNetV2 x1.0 and x0.35, Xception; output stride 16 and 8; binary head with the
default 256-filter ASPP and decoder; plus the shipped model's config (read from
looking_glass/model/shipped/deeplabv3plus_synthetic.json when it exists) and the untrained fallback's.
All with random weights (no download).

FLOPs: the analytic count of ``looking_glass.model.deeplab.count_flops`` (convolutions and dense
layers, a multiply-add = 2; batch norm, activations, resizing not counted). ``--profiler`` adds
TensorFlow's profiler count of the same convolution ops (more where dilated convolutions run
on SpaceToBatchND-padded maps) and its total with element-wise ops.

Speed: ``model.predict_on_batch`` (a compiled graph) on uint8-range float tiles, one warm-up
batch, then the mean over ``--batches`` timed batches. Threads are TensorFlow's defaults; the
numbers depend on the machine and on whatever else runs on it.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]

import numpy as np  # noqa: E402

SIDECAR = REPO / "looking_glass" / "model" / "shipped" / "deeplabv3plus_synthetic.json"

VARIANTS = [
    ("mobilenetv2 a1.0 os16", dict(backbone="mobilenetv2", alpha=1.0, output_stride=16)),
    ("mobilenetv2 a1.0 os8", dict(backbone="mobilenetv2", alpha=1.0, output_stride=8)),
    ("mobilenetv2 a0.35 os16", dict(backbone="mobilenetv2", alpha=0.35, output_stride=16)),
    ("mobilenetv2 a0.35 os8", dict(backbone="mobilenetv2", alpha=0.35, output_stride=8)),
    ("xception os16", dict(backbone="xception", output_stride=16)),
    ("xception os8", dict(backbone="xception", output_stride=8)),
]


def variants() -> list[tuple[str, dict]]:
    from looking_glass.model.segmenter import UNTRAINED_CONFIG

    out = [(name, dict(kwargs, head="binary")) for name, kwargs in VARIANTS]
    if SIDECAR.exists():
        config = json.loads(SIDECAR.read_text()).get("config", {})
        out.append((f"shipped ({SIDECAR.stem})", config))
    else:
        print(f"note: {SIDECAR.relative_to(REPO)} not found; no shipped-model row", flush=True)
    out.append(("untrained fallback", dict(UNTRAINED_CONFIG)))
    return out


def tiles_per_second(model, size: int, batch_size: int, batches: int) -> float:
    x = np.random.default_rng(0).uniform(0, 255, (batch_size, size, size, 3)).astype(np.float32)
    model.predict_on_batch(x)  # warm-up: traces and compiles the predict function
    started = time.perf_counter()
    for _ in range(batches):
        model.predict_on_batch(x)
    return batch_size * batches / (time.perf_counter() - started)


def shipped_report(batch_size: int, batches: int) -> dict:
    """Size and CPU speed of the shipped, trained model (loaded from its file)."""
    from looking_glass.model.deeplab import ModelConfig, count_flops
    from looking_glass.model.segmenter import SHIPPED_MODEL, Segmenter, load_metadata

    meta = load_metadata(SHIPPED_MODEL)
    started = time.perf_counter()
    seg = Segmenter.load()
    load_s = time.perf_counter() - started
    cfg = ModelConfig(**meta["config"])
    x = np.random.default_rng(0).integers(0, 256, (batch_size, cfg.input_size, cfg.input_size, 3)).astype(np.uint8)
    seg.predict_masks(x)  # warm-up
    started = time.perf_counter()
    for _ in range(batches):
        seg.predict_masks(x)
    speed = batch_size * batches / (time.perf_counter() - started)
    row = {
        "model_id": meta["model_id"], "version": meta["version"],
        "file": str(SHIPPED_MODEL.relative_to(REPO)) if SHIPPED_MODEL.is_relative_to(REPO) else str(SHIPPED_MODEL),
        "file_mb": SHIPPED_MODEL.stat().st_size / 1e6,
        "params": int(seg.model.count_params()),
        "gflops_per_tile": count_flops(seg.model) / 1e9,
        "load_s": load_s, "tiles_per_s": speed, "batch_size": batch_size, "batches": batches,
        "cpus": os.cpu_count(),
    }
    print(f"shipped model {row['model_id']} v{row['version']} ({row['file']}): {row['file_mb']:.2f} MB, "
          f"{row['params'] / 1e6:.2f} M parameters, {row['gflops_per_tile']:.2f} GFLOPs per 256x256 tile, "
          f"loads in {load_s:.1f} s, {speed:.1f} tiles/s on the CPU (predict_masks, batch {batch_size}, "
          f"{batches} timed batches, {row['cpus']} CPUs visible; depends on what else runs)", flush=True)
    return row


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=3, help="timed batches per variant (default 3)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--no-speed", action="store_true", help="parameters and FLOPs only")
    parser.add_argument("--profiler", action="store_true", help="add TensorFlow profiler FLOPs")
    parser.add_argument("--json", help="also write the rows to this file")
    parser.add_argument("--shipped", action="store_true", help="the shipped trained model only: size and tiles/s")
    args = parser.parse_args(argv)
    if args.shipped:
        row = shipped_report(args.batch_size, args.batches)
        if args.json:
            Path(args.json).write_text(json.dumps(row, indent=2) + "\n")
        return [row]

    import keras
    import tensorflow as tf

    from looking_glass.model.deeplab import ModelConfig, build_deeplabv3plus, model_report, profiled_flops

    print(f"keras {keras.__version__}, tensorflow {tf.__version__}, {os.cpu_count()} CPUs visible, "
          f"batch {args.batch_size}, {args.batches} timed batches after 1 warm-up", flush=True)
    rows = []
    for name, kwargs in variants():
        cfg = ModelConfig(**kwargs)
        keras.utils.set_random_seed(0)
        started = time.perf_counter()
        model = build_deeplabv3plus(cfg)
        row = model_report(cfg, model)
        row["variant"] = name
        row["aspp_decoder"] = f"{cfg.aspp_filters}/{cfg.decoder_filters}"
        row["build_s"] = time.perf_counter() - started
        if args.profiler:
            row["profiler_conv_gflops"] = profiled_flops(model, convolutions_only=True) / 1e9
            row["profiler_total_gflops"] = profiled_flops(model) / 1e9
        if not args.no_speed:
            row["tiles_per_s"] = tiles_per_second(model, cfg.input_size, args.batch_size, args.batches)
        rows.append(row)
        print(f"  {name}: done ({time.perf_counter() - started:.0f}s)", flush=True)
        del model
        keras.backend.clear_session()

    header = ["variant", "aspp/dec", "input", "params (M)", "GFLOPs/tile"]
    if args.profiler:
        header += ["profiler conv", "profiler all"]
    if not args.no_speed:
        header += ["tiles/s (CPU)"]
    lines = [header]
    for r in rows:
        line = [r["variant"], r["aspp_decoder"], str(r["input_size"]),
                f"{r['params'] / 1e6:.2f}", f"{r['gflops']:.2f}"]
        if args.profiler:
            line += [f"{r['profiler_conv_gflops']:.2f}", f"{r['profiler_total_gflops']:.2f}"]
        if not args.no_speed:
            line += [f"{r['tiles_per_s']:.1f}"]
        lines.append(line)
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    print()
    for i, line in enumerate(lines):
        print("| " + " | ".join(cell.ljust(w) if j == 0 else cell.rjust(w) for j, (cell, w) in enumerate(zip(line, widths))) + " |")
        if i == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    print("\nFLOPs: analytic, 2 per multiply-add of Conv2D/DepthwiseConv2D/SeparableConv2D/Dense, "
          "one 256x256 tile; OS 8 = backbone's stride-16 step removed, later layers dilated x2.")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return rows


if __name__ == "__main__":
    main()
