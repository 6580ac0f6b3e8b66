"""The ``looking-glass`` command line."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from looking_glass.tiling.aoi import AoiError, parse_aoi


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
    from looking_glass.local.demo import DemoError, print_summary, run_demo

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

    from looking_glass.tiling.cover import count_tiles, iter_tiles, tile_runs

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
    from looking_glass.tiling.cover import tile_runs
    from looking_glass.tiling.estimate import estimate

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
    from looking_glass.datasets.prepare import PrepareConfig, PrepareError, prepare

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
    from looking_glass.datasets.prepare import PrepareError
    from looking_glass.datasets.synthdata import write_synthetic_dataset

    try:
        manifest = write_synthetic_dataset(args.out, args.tiles, seed=args.seed, overwrite=args.overwrite)
    except PrepareError as exc:
        raise SystemExit(f"error: {exc}") from None
    counts = manifest["counts"]
    print(f"wrote {counts['train']} train and {counts['validation']} validation synthetic chips to {args.out}")
    return 0


def _hyperparameters_arg(text: str | None) -> dict:
    if not text:
        return {}
    if not text.lstrip().startswith("{") and Path(text).is_file():
        text = Path(text).read_text()
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise SystemExit(f"error: --hyperparameters is not JSON (or a JSON file): {exc}") from None


def cmd_train(args) -> int:
    hyperparameters = _hyperparameters_arg(args.hyperparameters)
    if args.stack is not None:
        return _train_on_stack(args, hyperparameters)
    if not args.data:
        raise SystemExit("error: train --local needs --data DIR (a prepared dataset)")
    from looking_glass.training.local import run_local

    try:
        return run_local(args.data, args.root, hyperparameters)
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None


def _train_on_stack(args, hyperparameters: dict) -> int:
    """Upload the dataset (if --data) and start the stack's training state machine."""
    from looking_glass.local.deployment import DeploymentError, resolve_stack
    from looking_glass.training.contract import (
        TrainingRunError,
        TrainingStackOutputs,
        check_hyperparameters,
        hyperparameter_strings,
        start_on_stack,
        wait_for_execution,
    )

    if args.root:
        raise SystemExit("error: --root is for --local runs (the training job's root is SageMaker's /opt/ml)")
    try:
        values = hyperparameter_strings(hyperparameters)
        check_hyperparameters(values)
        deployment = resolve_stack(args.stack or None)
        outputs = TrainingStackOutputs.from_outputs(deployment.outputs or {}, deployment.name)
        execution = start_on_stack(
            deployment.client("stepfunctions"),
            deployment.client("s3"),
            outputs,
            values,
            data_dir=args.data,
            run_name=args.name,
            progress=lambda uri: print(f"uploaded {uri}", file=sys.stderr),
        )
    except (TrainingRunError, DeploymentError) as exc:
        raise SystemExit(f"error: {exc}") from None
    print(execution)
    if not args.wait:
        return 0
    answer = wait_for_execution(
        deployment.client("stepfunctions"),
        execution,
        poll_s=args.poll_seconds,
        on_poll=lambda a: print(f"{a['status']}", file=sys.stderr),
    )
    print(json.dumps({"status": answer["status"], "output": answer.get("output"), "error": answer.get("error"),
                      "cause": answer.get("cause")}, indent=2))
    return 0 if answer["status"] == "SUCCEEDED" else 1


def _eval_data(args):
    from looking_glass.training.evaluate import prepared_eval_set, synthetic_eval_set

    if args.data:
        try:
            return prepared_eval_set(args.data)
        except (OSError, ValueError, KeyError) as exc:
            raise SystemExit(f"error: cannot read prepared chips from {args.data}: {exc}") from None
    return synthetic_eval_set(args.synthetic, args.seed)


def _load_model(path: str):
    from looking_glass.model.segmenter import Segmenter

    try:
        return Segmenter.load(path)
    except Exception as exc:  # noqa: BLE001 - any load failure is the user's to see
        raise SystemExit(f"error: cannot load model {path or '(shipped)'}: {exc}") from None


def cmd_evaluate(args) -> int:
    from looking_glass.training.evaluate import evaluate

    segmenter = _load_model(args.model)
    images, masks, _ = _eval_data(args)
    print(json.dumps(evaluate(segmenter, images, masks), indent=2))
    return 0


def cmd_plot(args) -> int:
    from looking_glass.training.evaluate import plot_examples

    segmenter = _load_model(args.model)
    images, masks, sdts = _eval_data(args)
    plot_examples(segmenter, images, masks, sdts, Path(args.out), count=args.count)
    print(f"wrote {args.out}")
    return 0


def cmd_validate(args) -> int:
    from looking_glass.tiling.cover import count_tiles, tile_runs
    from looking_glass.grid import ZOOM

    _, aoi = _read_aoi(args.aoi)
    for warning in aoi.warnings:
        print(f"warning: {warning}")
    print(f"{args.aoi}: valid AOI '{aoi.name}', {count_tiles(tile_runs(aoi.geometry, ZOOM)):,} zoom-{ZOOM} tiles")
    return 0


def cmd_serve_synthetic(args) -> int:
    from looking_glass.local.tileserver import SyntheticTileServer

    server = SyntheticTileServer(port=args.port, latency_s=args.latency_ms / 1000).start()
    print(f"serving the synthetic world at {server.url_template} (Ctrl-C to stop)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()
    return 0


def cmd_serve_tiles(args) -> int:
    from looking_glass.imagery.geotiff import GeoTiffError, GeoTiffTiles
    from looking_glass.runtime.settings import GEOTIFF_SUFFIXES, SettingsError, _bands
    from looking_glass.local.tileserver import SyntheticTileServer

    try:
        bands = _bands({"--bands": args.bands}, "--bands")
        if not args.image.lower().endswith(GEOTIFF_SUFFIXES):
            raise GeoTiffError(f"{args.image}: not a .tif/.tiff file")
        image = GeoTiffTiles(args.image, bands=bands)
    except (SettingsError, GeoTiffError) as exc:
        raise SystemExit(f"error: {exc}") from None
    server = SyntheticTileServer(
        port=args.port, latency_s=args.latency_ms / 1000, tile_source=lambda z, x, y: image.png(x, y, z)
    ).start()
    print(f"serving {args.image} (bands {','.join(map(str, image.bands))}) at {server.url_template} "
          "(404 outside the image; Ctrl-C to stop)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()
        image.close()
    return 0


# ---- results: up, submit, jobs, status, results, retry, map (against --stack NAME or `up`) ----
JOB_ID_RE = r"^[0-9a-f]{6,64}$"


def _deployment(args):
    from looking_glass.local.deployment import DeploymentError, resolve

    try:
        return resolve(args.stack, args.embedded)
    except DeploymentError as exc:
        raise SystemExit(f"error: {exc}") from None


def _job_id(store, text: str) -> str:
    """A job id, or an unambiguous prefix of one (at least 6 hex digits)."""
    import re

    if not re.match(JOB_ID_RE, text):
        raise SystemExit(f"error: {text!r} is not a job id (hex digits, as printed by submit and jobs)")
    if store.get_job(text) is not None:
        return text
    matches = [j["job_id"] for j in store.list_jobs() if j["job_id"].startswith(text)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise SystemExit(f"error: job id prefix {text!r} is ambiguous: {', '.join(matches[:5])}")
    raise SystemExit(f"error: no job {text!r} (see `looking-glass jobs`)")


def _aws_guard(func):
    """AWS failures (endpoint down, access denied, throttling past retries) as one clear line."""
    import functools

    @functools.wraps(func)
    def run(args) -> int:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return func(args)
        except ClientError as exc:
            err = exc.response.get("Error", {})
            raise SystemExit(f"error: AWS refused {exc.operation_name}: {err.get('Code')}: {err.get('Message')}") from None
        except BotoCoreError as exc:
            raise SystemExit(f"error: cannot reach AWS: {exc}") from None

    return run


def _key_ranges(dep) -> int:
    """Parallel key-range queries: DynamoDB serves them side by side; moto (the embedded run)
    walks the whole partition for each query, so one range is fastest there."""
    return 1 if dep.kind == "embedded" else 4


def _ops_error(exc) -> SystemExit:
    return SystemExit(f"error: {exc}")


def cmd_up(args) -> int:
    from looking_glass.local.deployment import default_state_path, run_embedded

    state_path = Path(args.embedded) if args.embedded else default_state_path()
    work_dir = Path(args.dir) if args.dir else state_path.parent / "run"

    def ready(state):
        res = state["resources"]
        print(f"embedded Looking Glass is up (pid {state['pid']}); Ctrl-C stops it and its data goes with it")
        print(f"  AWS endpoint:   {state['endpoint_url']}")
        print(f"  imagery:        {state['tile_url_template']}")
        print(f"  trigger bucket: {res['trigger_bucket']}   results table: {res['results_table']}")
        print(f"  state file:     {state_path}   worker logs: {work_dir / 'logs'}")
        print("in another terminal: looking-glass submit AOI.geojson --wait; looking-glass jobs", flush=True)

    run_embedded(state_path, work_dir, workers=args.workers, ready=ready)
    print("embedded run stopped")
    return 0


def cmd_submit(args) -> int:
    from looking_glass.pipeline.jobs import JobError, store_for, submit, wait_for

    path = Path(args.aoi)
    if not path.is_file():
        raise SystemExit(f"error: AOI file {args.aoi} not found")
    dep = _deployment(args)
    try:
        sub = submit(dep, path.read_bytes(), path.name, args.name)
    except JobError as exc:
        raise _ops_error(exc) from None
    for warning in sub["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"submitted {args.aoi} as '{sub['name']}' ({sub['tiles']:,} zoom-18 tiles) to {sub['key']} on {dep.describe()}",
          file=sys.stderr)
    print(sub["job_id"], flush=True)
    if not args.wait:
        return 0
    try:
        job = wait_for(store_for(dep), sub["job_id"], timeout_s=args.timeout, progress=not args.no_progress)
    except JobError as exc:
        raise _ops_error(exc) from None
    print(f"job {sub['job_id']} {job['status']}: {int(job.get('tiles_done', 0)):,} done, "
          f"{int(job.get('tiles_failed', 0)):,} failed, {int(job.get('tiles_no_imagery', 0)):,} no imagery, "
          f"{int(job.get('tiles_skipped', 0)):,} skipped"
          + (f"; reason: {job['reason']}" if job.get("reason") else ""), file=sys.stderr)
    return 0 if job["status"] == "COMPLETE" else 1


def _progress(job: dict) -> str:
    total = int(job.get("tiles_total", 0))
    final = int(job.get("tiles_final", 0))
    return f"{final:,}/{total:,} ({100 * final / total:.0f}%)" if total else "-"


def cmd_jobs(args) -> int:
    from looking_glass.pipeline.jobs import store_for
    from looking_glass.results.figures import _plain

    dep = _deployment(args)
    jobs = store_for(dep).list_jobs(limit=args.limit)
    if args.json:
        print(json.dumps([_plain(j) for j in jobs], default=str))
        return 0
    header = ("job_id", "status", "progress", "failed", "created_at", "finished_at", "name")
    rows = [
        (j["job_id"], j.get("status", ""), _progress(j), f"{int(j.get('tiles_failed', 0)):,}",
         j.get("created_at", ""), j.get("finished_at", "") or "-", j.get("name", ""))
        for j in jobs
    ]
    widths = [max(len(h), *(len(str(r[i])) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip())
    for r in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())
    if not rows:
        print(f"(no jobs on {dep.describe()})")
    return 0


def cmd_status(args) -> int:
    from looking_glass.pipeline.jobs import JobError, status, store_for
    from looking_glass.results.figures import _plain

    dep = _deployment(args)
    job_id = _job_id(store_for(dep), args.job)
    try:
        info = _plain(status(dep, job_id))
    except JobError as exc:
        raise _ops_error(exc) from None
    if args.json:
        print(json.dumps(info, default=str))
        return 0
    order = ("job_id", "name", "status", "reason", "progress_pct", "tiles_total", "tiles_done", "tiles_failed",
             "tiles_no_imagery", "tiles_skipped", "tiles_pending", "building_area_m2", "created_at", "retried_at",
             "finished_at", "messages_total", "workers", "worker_job", "dlq_messages", "aoi_key", "deployment")
    for key in order:
        if key in info and info[key] not in (None, ""):
            print(f"{key:18} {info[key]}")
    for warning in info.get("warnings") or []:
        print(f"{'warning':18} {warning}")
    for reason, count in info["tile_failure_reasons"].items():
        print(f"{'tile failures':18} {count:>6} x {reason}")
    return 0


def cmd_results(args) -> int:
    from looking_glass.pipeline.jobs import store_for
    from looking_glass.results.query import ResultsError, parse_polygons, query, render

    polygons = None
    if args.within:
        p = Path(args.within)
        if not p.is_file():
            raise SystemExit(f"error: polygons file {args.within} not found")
        try:
            polygons = parse_polygons(p.read_bytes())
        except ResultsError as exc:
            raise _ops_error(exc) from None
    if args.out and not Path(args.out).parent.is_dir():
        raise SystemExit(f"error: --out {args.out}: folder {Path(args.out).parent} does not exist")
    dep = _deployment(args)
    store = store_for(dep)
    job_id = _job_id(store, args.job)
    try:
        mode, rows, tot = query(store, job_id, zoom=args.zoom, polygons=polygons, threads=_key_ranges(dep))
        text = render(args.format, mode, rows, tot, job_id)
    except ResultsError as exc:
        raise _ops_error(exc) from None
    if args.out:
        Path(args.out).write_text(text)
        print(f"wrote {args.out}: {len(rows):,} rows ({args.format})", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def _statuses(text: str) -> tuple[str, ...]:
    from looking_glass.pipeline.jobs import RETRYABLE

    values = tuple(s.strip() for s in text.split(",") if s.strip())
    bad = [s for s in values if s not in RETRYABLE]
    if bad or not values:
        raise argparse.ArgumentTypeError(f"{text!r}: give a comma-separated list of {', '.join(RETRYABLE)}")
    return values


def cmd_retry(args) -> int:
    from looking_glass.pipeline.jobs import JobError, retry, store_for

    dep = _deployment(args)
    job_id = _job_id(store_for(dep), args.job)
    try:
        out = retry(dep, job_id, statuses=args.statuses, force=args.force)
    except JobError as exc:
        raise _ops_error(exc) from None
    print(f"job {job_id}: {out['tiles_reset']:,} tiles reset ({', '.join(args.statuses)}), "
          f"{out['tiles_missing']:,} without any result, {out['dlq_messages_moved']:,} dead-letter messages moved back, "
          f"{out['tiles_enqueued']:,} tiles enqueued in {out['work_units_enqueued']:,} work units; {out['workers']}")
    if not out["aoi_read"]:
        print("warning: the job's AOI could not be read, so tiles that never got a result were not found",
              file=sys.stderr)
    return 0


def cmd_map(args) -> int:
    from looking_glass.pipeline.jobs import store_for
    from looking_glass.results.query import ResultsError
    from looking_glass.results.webmap import MapError, make_map

    dep = _deployment(args)
    store = store_for(dep)
    job_id = _job_id(store, args.job)
    template = args.imagery
    if template is None:
        template = dep.tile_url_template
        if not template:
            first = next(store.query_tiles(job_id, attributes=("imagery",)), None)
            template = (first or {}).get("imagery")
    try:
        out = make_map(store, job_id, Path(args.out), template, zoom=args.zoom, colour_by=args.colour,
                       threads=_key_ranges(dep))
    except (MapError, ResultsError) as exc:
        raise _ops_error(exc) from None
    print(f"wrote {out['png']} and {out['html']} ({out['features']:,} zoom-{out['zoom']} features)")
    return 0


def _add_target(p) -> None:
    group = p.add_mutually_exclusive_group()
    group.add_argument("--stack", nargs="?", const="", metavar="NAME",
                       help="a deployed stack: reads the outputs of NAMEStorage, NAMEInference, ... "
                            "(NAME defaults to LookingGlass)")
    group.add_argument("--embedded", metavar="STATE",
                       help="state file of `looking-glass up` (default ~/.looking-glass/embedded.json); "
                            "the default target when --stack is not given")


def add_results_commands(sub) -> None:
    up = sub.add_parser("up", help="keep an embedded Looking Glass running for submit/jobs/results/...")
    up.add_argument("--workers", type=_positive_int, default=2, help="local worker processes (default 2)")
    up.add_argument("--embedded", metavar="STATE", help="state file to write (default ~/.looking-glass/embedded.json)")
    up.add_argument("--dir", help="working folder for worker logs (default: next to the state file)")
    up.set_defaults(func=cmd_up)

    submit = sub.add_parser("submit", help="validate an AOI and upload it: prints the job id")
    submit.add_argument("aoi", help="AOI GeoJSON file")
    _add_target(submit)
    submit.add_argument("--name", help="label of the job (default: the AOI's name or file name)")
    submit.add_argument("--wait", action="store_true", help="follow the job with a progress bar until it is final")
    submit.add_argument("--timeout", type=_positive_float, default=24 * 3600.0, help="seconds --wait waits")
    submit.add_argument("--no-progress", action="store_true", help="with --wait: no progress bar")
    submit.set_defaults(func=_aws_guard(cmd_submit))

    jobs = sub.add_parser("jobs", help="jobs, newest first: status, progress, created and finished, name")
    _add_target(jobs)
    jobs.add_argument("--limit", type=_positive_int, default=50)
    jobs.add_argument("--json", action="store_true")
    jobs.set_defaults(func=_aws_guard(cmd_jobs))

    st = sub.add_parser("status", help="one job in detail: counters, failure reasons, dead-letter messages")
    st.add_argument("job", help="job id (or an unambiguous prefix)")
    _add_target(st)
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=_aws_guard(cmd_status))

    res = sub.add_parser("results", help="per tile, per coarser tile (--zoom) or per polygon (--within)")
    res.add_argument("job", help="job id (or an unambiguous prefix)")
    _add_target(res)
    how = res.add_mutually_exclusive_group()
    how.add_argument("--zoom", type=_zoom, help="roll up to tiles of this zoom (quadkey prefix), 0..18")
    how.add_argument("--within", metavar="POLYGONS", help="GeoJSON polygons: each gets its tiles, weighted by the fraction inside")
    res.add_argument("--format", choices=("table", "csv", "geojson"), default="table")
    res.add_argument("--out", help="write to this file instead of standard output")
    res.set_defaults(func=_aws_guard(cmd_results))

    rt = sub.add_parser("retry", help="re-enqueue the tiles without a done result; move dead letters back")
    rt.add_argument("job", help="job id (or an unambiguous prefix)")
    _add_target(rt)
    rt.add_argument("--statuses", type=_statuses, default=("failed", "no_imagery", "skipped"),
                    help="which stored outcomes to redo (default failed,no_imagery,skipped); tiles with no result are always redone")
    rt.add_argument("--force", action="store_true", help="enqueue even if the tile queue is not empty")
    rt.set_defaults(func=_aws_guard(cmd_retry))

    mp = sub.add_parser("map", help="map.png and a self-contained map.html of a job")
    mp.add_argument("job", help="job id (or an unambiguous prefix)")
    _add_target(mp)
    mp.add_argument("--out", required=True, help="output folder")
    mp.add_argument("--zoom", type=_zoom, help="roll up to this zoom (default: per tile, coarser past 20,000 tiles)")
    mp.add_argument("--colour", choices=("density", "area"), default="density")
    mp.add_argument("--imagery", help="XYZ URL template under the tiles (default: the job's imagery)")
    mp.set_defaults(func=_aws_guard(cmd_map))


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

    train = sub.add_parser("train", help="train DeepLab V3+ with the SageMaker entry point, here or on a stack")
    where = train.add_mutually_exclusive_group(required=True)
    where.add_argument("--local", action="store_true", help="run on this machine in an /opt/ml-like root")
    where.add_argument("--stack", nargs="?", const="", metavar="NAME",
                       help="start a SageMaker training job through the deployed stack's state machine "
                            "(NAME defaults to LookingGlass)")
    train.add_argument("--data", help="a prepared dataset (prepare or synth-data output); with --stack it is "
                                      "uploaded to the training bucket first, without it the bucket's data is used")
    train.add_argument("--root", help="--local: the /opt/ml-like root (default: a new temporary folder); reuse it to resume")
    train.add_argument("--hyperparameters", help="JSON object, or a JSON file, e.g. '{\"epochs\": 5}'")
    train.add_argument("--name", help="--stack: the execution name (default: Step Functions picks one)")
    train.add_argument("--wait", action="store_true", help="--stack: follow the execution until it is final")
    train.add_argument("--poll-seconds", type=float, default=30.0, help=argparse.SUPPRESS)
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
    tiles = sub.add_parser("serve-tiles", help="serve a GeoTIFF/COG as XYZ tiles (web mercator, 256 px)")
    tiles.add_argument("image", help="GeoTIFF or COG, local or s3://bucket/key.tif")
    tiles.add_argument("--port", type=int, default=8619, help="port on 127.0.0.1 (0: any free port)")
    tiles.add_argument("--bands", help="1-based bands for R,G,B (e.g. 3,2,1; one band is grey)")
    tiles.add_argument("--latency-ms", type=float, default=0.0)
    tiles.set_defaults(func=cmd_serve_tiles)
    add_results_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
