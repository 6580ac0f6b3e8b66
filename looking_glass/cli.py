"""The ``looking-glass`` command line."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from .aoi import AoiError, parse_aoi


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def _zoom(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if not 0 <= value <= 24:
        raise argparse.ArgumentTypeError(f"zoom {value} is outside 0..24")
    return value


def _read_aoi(path: str):
    p = Path(path)
    if not p.is_file():
        raise SystemExit(f"error: AOI file {path} not found")
    try:
        return p.read_bytes(), parse_aoi(p.read_bytes(), default_name=p.stem)
    except AoiError as exc:
        raise SystemExit(f"error: {path}: {exc}") from None


def cmd_demo(args) -> int:
    from .demo import DemoError, print_summary, run_demo

    data, name = None, "sample_aoi.geojson"
    if args.aoi:
        data, _ = _read_aoi(args.aoi)
        name = Path(args.aoi).name
    print(f"Looking Glass demo: embedded AWS (moto), synthetic imagery, {args.workers} local worker(s)")
    try:
        summary = run_demo(
            Path(args.out), data, name, workers=args.workers, model_path=args.model, timeout_s=args.timeout
        )
    except DemoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print_summary(summary)
    print(f"wrote {args.out}/summary.json, results.geojson, map.png")
    return 0


def cmd_cover(args) -> int:
    import mercantile

    from .cover import count_tiles, iter_tiles, tile_runs

    _, aoi = _read_aoi(args.aoi)
    runs = tile_runs(aoi.geometry, args.zoom)
    for warning in aoi.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    out = sys.stdout
    if args.format == "count":
        print(count_tiles(runs), file=out)
    elif args.format == "xyz":
        for x, y, z in iter_tiles(runs, args.zoom):
            out.write(f"{x} {y} {z}\n")
    elif args.format == "quadkey":
        for x, y, z in iter_tiles(runs, args.zoom):
            out.write(mercantile.quadkey(x, y, z) + "\n")
    else:  # geojson
        features = (mercantile.feature((x, y, z)) for x, y, z in iter_tiles(runs, args.zoom))
        json.dump({"type": "FeatureCollection", "features": list(features)}, out)
        out.write("\n")
    return 0


def cmd_estimate(args) -> int:
    from .cover import tile_runs
    from .estimate import estimate

    _, aoi = _read_aoi(args.aoi)
    result = estimate(
        tile_runs(aoi.geometry, args.zoom),
        args.zoom,
        tiles_per_message=args.tiles_per_message,
        tiles_per_second=args.tiles_per_second,
        price_per_hour=args.price_per_hour,
    )
    if args.json:
        print(json.dumps(result.to_dict()))
        return 0
    print(f"tiles (zoom {args.zoom}):     {result.tiles:,}")
    print(f"area of those tiles:   {result.tiles_area_km2:,.3f} km2")
    print(f"SQS messages:          {result.sqs_messages:,} ({result.sqs_send_requests:,} send requests)")
    print(f"worker time:           {result.worker_hours:,.2f} h at {result.tiles_per_second:g} tiles/s")
    print(f"worker cost:           USD {result.cost_usd:,.2f} at USD {result.price_per_hour:g}/instance-hour")
    return 0


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{value} must be greater than 0")
    return value


def cmd_prepare(args) -> int:
    from .prepare import PrepareConfig, PrepareError, prepare

    try:
        bands = tuple(int(b) for b in args.bands.split(",")) if args.bands else None
    except ValueError:
        raise SystemExit(f"error: --bands {args.bands!r} must be comma-separated band numbers, e.g. 1,2,3") from None
    try:
        config = PrepareConfig(
            chip_size=args.chip_size, mode=args.mode, bands=bands, sdt_clip_m=args.sdt_clip,
            max_nodata_fraction=args.max_nodata, val_fraction=args.val_fraction,
            split_block=args.split_block, seed=args.seed,
        )
        manifest = prepare(args.images, args.footprints, args.out, config, overwrite=args.overwrite, log=print)
    except PrepareError as exc:
        raise SystemExit(f"error: {exc}") from None
    counts = manifest["counts"]
    print(f"wrote {counts['train']} train and {counts['validation']} validation chips to {args.out} "
          f"({counts.get('dropped_nodata', 0)} dropped for nodata); manifest: {args.out}/manifest.json")
    for warning in manifest.get("warnings", []):
        print(f"warning: {warning}")
    return 0


def cmd_synth_data(args) -> int:
    from .prepare import PrepareError
    from .synthdata import write_synthetic_dataset

    try:
        manifest = write_synthetic_dataset(args.out, args.tiles, seed=args.seed, overwrite=args.overwrite)
    except PrepareError as exc:
        raise SystemExit(f"error: {exc}") from None
    counts = manifest["counts"]
    print(f"wrote {counts['train']} train and {counts['validation']} validation synthetic chips to {args.out}")
    return 0


def cmd_train(args) -> int:
    from .train_local import run_local

    hyperparameters = {}
    if args.hyperparameters:
        text = args.hyperparameters
        if not text.lstrip().startswith("{") and Path(text).is_file():
            text = Path(text).read_text()
        try:
            hyperparameters = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SystemExit(f"error: --hyperparameters is not JSON (or a JSON file): {exc}") from None
    try:
        return run_local(args.data, args.root, hyperparameters)
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None


def _eval_data(args):
    from .evaluate import prepared_eval_set, synthetic_eval_set

    if args.data:
        try:
            return prepared_eval_set(args.data)
        except (OSError, ValueError, KeyError) as exc:
            raise SystemExit(f"error: cannot read prepared chips from {args.data}: {exc}") from None
    return synthetic_eval_set(args.synthetic, args.seed)


def _load_model(path: str):
    from .inference import Segmenter

    try:
        return Segmenter.load(path)
    except Exception as exc:  # noqa: BLE001 - any load failure is the user's to see
        raise SystemExit(f"error: cannot load model {path or '(shipped)'}: {exc}") from None


def cmd_evaluate(args) -> int:
    from .evaluate import evaluate

    segmenter = _load_model(args.model)
    images, masks, _ = _eval_data(args)
    print(json.dumps(evaluate(segmenter, images, masks), indent=2))
    return 0


def cmd_plot(args) -> int:
    from .evaluate import plot_examples

    segmenter = _load_model(args.model)
    images, masks, sdts = _eval_data(args)
    plot_examples(segmenter, images, masks, sdts, Path(args.out), count=args.count)
    print(f"wrote {args.out}")
    return 0


def cmd_validate(args) -> int:
    from .cover import count_tiles, tile_runs
    from .grid import ZOOM

    _, aoi = _read_aoi(args.aoi)
    for warning in aoi.warnings:
        print(f"warning: {warning}")
    print(f"{args.aoi}: valid AOI '{aoi.name}', {count_tiles(tile_runs(aoi.geometry, ZOOM)):,} zoom-{ZOOM} tiles")
    return 0


def cmd_serve_synthetic(args) -> int:
    from .tileserver import SyntheticTileServer

    server = SyntheticTileServer(port=args.port, latency_s=args.latency_ms / 1000).start()
    print(f"serving the synthetic world at {server.url_template} (Ctrl-C to stop)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="looking-glass", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run the whole pipeline on the embedded default")
    demo.add_argument("--out", default="demo-output", help="output directory (default ./demo-output)")
    demo.add_argument("--aoi", help="AOI GeoJSON (default: the sample shipped with the package)")
    demo.add_argument("--workers", type=_positive_int, default=1, help="local worker processes (default 1)")
    demo.add_argument("--model", default="", help="Keras model file (default: the shipped model)")
    demo.add_argument("--timeout", type=float, default=280.0, help="seconds to wait for the job")
    demo.set_defaults(func=cmd_demo)

    cover = sub.add_parser("cover", help="print the tiles that cover an AOI")
    cover.add_argument("aoi", help="AOI GeoJSON file")
    cover.add_argument("--zoom", type=_zoom, default=18)
    cover.add_argument("--format", choices=("xyz", "quadkey", "geojson", "count"), default="xyz")
    cover.set_defaults(func=cmd_cover)

    est = sub.add_parser("estimate", help="tiles, area, SQS traffic, worker time and cost of an AOI")
    est.add_argument("aoi", help="AOI GeoJSON file")
    est.add_argument("--zoom", type=_zoom, default=18)
    est.add_argument("--tiles-per-message", type=_positive_int, default=64)
    est.add_argument("--tiles-per-second", type=_positive_float, default=40.0,
                     help="worker throughput (default 40: DeepLab V3+ on 2 CPU cores)")
    est.add_argument("--price-per-hour", type=_positive_float, default=0.526,
                     help="USD per worker instance-hour (default: g4dn.xlarge on-demand, us-east-1)")
    est.add_argument("--json", action="store_true", help="print JSON")
    est.set_defaults(func=cmd_estimate)

    prep = sub.add_parser("prepare", help="GeoTIFFs + GeoJSON footprints to training chips")
    prep.add_argument("--images", nargs="+", required=True, help="GeoTIFFs (local or s3://)")
    prep.add_argument("--footprints", nargs="+", required=True, help="GeoJSON footprints (local or s3://)")
    prep.add_argument("--out", required=True, help="output directory (shards + manifest.json)")
    prep.add_argument("--mode", choices=("native", "tiles"), default="native",
                      help="native-resolution chips, or chips on the zoom-18 tile grid (reprojected)")
    prep.add_argument("--bands", help="1-based bands for R,G,B (e.g. 1,2,3; one band is replicated)")
    prep.add_argument("--chip-size", type=_positive_int, default=256)
    prep.add_argument("--sdt-clip", type=_positive_float, default=10.0, help="clip SDT to +-N metres")
    prep.add_argument("--max-nodata", type=float, default=0.2, help="drop chips with more black/nodata")
    prep.add_argument("--val-fraction", type=float, default=0.2)
    prep.add_argument("--split-block", type=_positive_int, default=4, help="chips per block side for the split")
    prep.add_argument("--seed", type=int, default=0)
    prep.add_argument("--overwrite", action="store_true", help="replace an earlier prepared dataset")
    prep.set_defaults(func=cmd_prepare)

    synth = sub.add_parser("synth-data", help="a training set from the synthetic world (prepare format)")
    synth.add_argument("--tiles", type=_positive_int, required=True)
    synth.add_argument("--out", required=True)
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--overwrite", action="store_true")
    synth.set_defaults(func=cmd_synth_data)

    train = sub.add_parser("train", help="train DeepLab V3+ with the SageMaker entry point, locally")
    train.add_argument("--local", action="store_true", required=True,
                       help="run on this machine in an /opt/ml-like root (the only mode so far)")
    train.add_argument("--data", required=True, help="a prepared dataset (prepare or synth-data output)")
    train.add_argument("--root", help="the /opt/ml-like root (default: a new temporary folder); reuse it to resume")
    train.add_argument("--hyperparameters", help="JSON object, or a JSON file, e.g. '{\"epochs\": 5}'")
    train.set_defaults(func=cmd_train)

    for name, func, helptext in (
        ("evaluate", cmd_evaluate, "IoU, F1, precision, recall of a model (JSON)"),
        ("plot", cmd_plot, "image, truth, predicted mask and SDT side by side (PNG)"),
    ):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("--model", default="", help="Keras model file with its .json sidecar (default: shipped)")
        source = p.add_mutually_exclusive_group(required=True)
        source.add_argument("--synthetic", type=_positive_int, help="N freshly generated synthetic tiles")
        source.add_argument("--data", help="a prepared dataset: its validation chips")
        p.add_argument("--seed", type=int, default=0, help="seed of the synthetic tiles")
        if name == "plot":
            p.add_argument("--out", required=True, help="PNG file to write")
            p.add_argument("--count", type=_positive_int, default=4, help="examples (rows)")
        p.set_defaults(func=func)

    validate = sub.add_parser("validate", help="check an AOI with the enumerator's rules")
    validate.add_argument("aoi", help="AOI GeoJSON file")
    validate.set_defaults(func=cmd_validate)

    serve = sub.add_parser("serve-synthetic", help="serve the synthetic world as XYZ tiles")
    serve.add_argument("--port", type=int, default=8618)
    serve.add_argument("--latency-ms", type=float, default=0.0)
    serve.set_defaults(func=cmd_serve_synthetic)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
