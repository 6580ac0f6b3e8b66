"""``up``, ``submit``, ``jobs``, ``status``, ``results``, ``retry`` and ``map``: jobs on a deployment,
either a stack by name (``--stack NAME``) or the embedded run of ``looking-glass up``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from looking_glass.cli.common import (
    JOB_HELP,
    CommandError,
    map_imagery,
    output_file,
    output_folder,
    positive_float,
    positive_int,
    resolve_job_ref,
    rollup_zoom,
)
from looking_glass.cli.common import add_target as _add_target
from looking_glass.cli.common import aws_guard as _aws_guard
from looking_glass.display import shown
from looking_glass.local.inputs import add_run_options


def _deployment(args):
    """The deployment that ``--stack``/``--embedded`` name (the embedded run by default)."""
    from looking_glass.local.deployment import resolve

    return resolve(args.stack, args.embedded)


def _key_ranges(dep) -> int:
    """Parallel key-range queries: DynamoDB serves them side by side; moto (the embedded run)
    walks the whole partition for each query, so one range is fastest there."""
    return 1 if dep.kind == "embedded" else 4


def cmd_up(args) -> int:
    """Keep an embedded Looking Glass running (moto, tile server, workers) until Ctrl-C."""
    from looking_glass.local.deployment import default_state_path, embedded_option, run_embedded
    from looking_glass.local.inputs import validated_inputs

    inputs = validated_inputs(args)  # a bad --imagery/--bands/--model: exit 2, nothing started
    state_path = Path(args.embedded) if args.embedded else default_state_path()
    work_dir = Path(args.dir) if args.dir else state_path.parent / "run"

    def ready(state):
        res = state["resources"]
        print(f"embedded Looking Glass is up (pid {state['pid']}); Ctrl-C stops it and its data goes with it")
        print(f"  AWS endpoint:   {state['endpoint_url']}")
        print(f"  imagery:        {inputs.describe_imagery()} (tiles at {state['tile_url_template']})")
        if inputs.default_attribution:
            print(f"  credited as:    {shown(inputs.default_attribution)}")
        for name, src in inputs.sources.items():
            date = f" (captured {src.date})" if src.date else ""
            credit = f", credited as {shown(src.attribution)}" if src.attribution else ""
            print(f"  imagery '{shown(name)}': {shown(src.source)}{date}{credit}; use: submit AOI --imagery {shown(name)}")
        print(f"  trigger bucket: {res['trigger_bucket']}   results table: {res['results_table']}")
        print(f"  state file:     {state_path}   worker logs: {work_dir / 'logs'}")
        target = embedded_option(state_path)
        print(f"in another terminal: looking-glass submit AOI.geojson{target} --wait; looking-glass jobs{target}",
              flush=True)

    run_embedded(state_path, work_dir, workers=args.workers, ready=ready, **inputs.embedded_options())
    print("embedded run stopped")
    return 0


def cmd_submit(args) -> int:
    """Validate an AOI, upload it as a job and print the job id; ``--wait`` follows it."""
    from looking_glass.pipeline.job_model import deployment_model
    from looking_glass.pipeline.job_notes import no_imagery_note
    from looking_glass.pipeline.jobs import store_for, submit, wait_for

    dep = _deployment(args)
    _warn_synthetic_default(dep, args.imagery)
    if args.aoi is None:  # the footprint of the named source
        data, filename = _footprint_aoi(dep, args.imagery)
        what = f"the footprint of imagery '{args.imagery}'"
    else:
        what = args.aoi
        path = Path(args.aoi)
        if not path.is_file():
            raise CommandError(f"AOI file {args.aoi} not found")
        data, filename = path.read_bytes(), path.name
        _check_meets_source(dep, args.imagery, data, args.aoi)
    sub = submit(dep, data, filename, args.name, imagery=args.imagery, model=deployment_model(dep),
                 rerun=args.rerun)
    for warning in sub["warnings"]:
        print(f"warning: {shown(warning)}", file=sys.stderr)
    old = sub["existing"]
    if old is not None:
        print(f"job {sub['job_id']} already holds the results of this AOI, imagery and model ({old['status']}, "
              f"submitted {old.get('created_at', '?')}): `looking-glass results {sub['job_id']}`; "
              "--rerun makes a new job", file=sys.stderr)
    else:
        print(f"submitted {shown(what)} as '{shown(sub['name'])}' ({sub['tiles']:,} zoom-18 tiles) to {sub['key']} "
              f"on {dep.describe()}", file=sys.stderr)
    print(sub["job_id"], flush=True)
    if not args.wait:
        return 0
    job = wait_for(store_for(dep), sub["job_id"], timeout_s=args.timeout, progress=not args.no_progress,
                   worker_check=_worker_check(dep))
    print(f"job {sub['job_id']} {job['status']}: {int(job.get('tiles_done', 0)):,} done, "
          f"{int(job.get('tiles_failed', 0)):,} failed, {int(job.get('tiles_no_imagery', 0)):,} no imagery, "
          f"{int(job.get('tiles_skipped', 0)):,} skipped"
          + (f"; reason: {shown(job['reason'])}" if job.get("reason") else ""), file=sys.stderr)
    note = no_imagery_note(job)
    if note:
        print(f"note: {note}", file=sys.stderr)
    return 0 if job["status"] == "COMPLETE" else 1


def _warn_synthetic_default(dep, name: str | None) -> None:
    """Warn on stderr when a job without ``--imagery`` would run on the synthetic test world of an
    embedded run that registered named sources (real-looking areas from simulated imagery): the
    user most likely forgot ``--imagery``. A warning, not a refusal: the demo's jobs use it."""
    named = sorted(n for n in (dep.imagery.sources if dep.imagery else {}) if n != dep.imagery.default)
    if name is None and getattr(dep, "default_is_synthetic", False) and named:
        print(f"warning: imagery: the default source is the synthetic test world; use --imagery {'|'.join(named)} "
              "for your imagery", file=sys.stderr)


def _footprint_aoi(dep, name: str | None) -> tuple[bytes, str]:
    """(GeoJSON bytes, file name) of the footprint of the registered source ``name``, for
    ``submit --imagery NAME`` without an AOI: read from the registry's definition (local files
    of the embedded run; a stack's ``s3://`` images with this session's credentials). Raises
    CommandError where there is none, before anything is uploaded."""
    if name is None:
        raise CommandError("give an AOI file, or --imagery NAME to use that source's footprint")
    from looking_glass.pipeline.jobs import check_imagery_name, imagery_registry

    check_imagery_name(dep, name)  # an unknown name: the registered ones, close ones first
    registry = imagery_registry(dep)
    entry = registry.sources.get(name) if registry is not None else None
    if entry is None:
        raise CommandError(f"the imagery registry of {dep.describe()} is not known here (deployed before its "
                           "ImagerySources output: `npx cdk deploy --all` adds it): give an AOI "
                           "(`looking-glass aoi IMAGE.tif > aoi.geojson` makes one from an image)")
    if entry.is_template:
        raise CommandError(f"imagery source '{name}' is a URL template, which has no extent: give an AOI file")
    from looking_glass.cli.serve import footprint_feature

    session = dep.data_session() if "s3://" in entry.source else None
    feature = footprint_feature(entry.source, f"{name}-footprint", bands=entry.bands, session=session)
    return json.dumps(feature).encode(), f"{name}-footprint.geojson"


def _check_meets_source(dep, name: str | None, data: bytes, label: str) -> None:
    """Refuse (exit 2, before anything is uploaded) an AOI (GeoJSON ``data`` of file ``label``)
    that does not intersect the footprint of the source the job would run on (``name``, None:
    the default), where that source is a GeoTIFF or mosaic whose definition is known here; a
    URL template or an unknown definition has no footprint to check."""
    from looking_glass.imagery.overlap import check_aoi_meets_footprint
    from looking_glass.pipeline.jobs import check_imagery_name, imagery_registry
    from looking_glass.tiling.aoi import AoiError, parse_aoi

    check_imagery_name(dep, name)
    registry = imagery_registry(dep)
    entry = registry.sources.get(registry.resolve(name)) if registry is not None else None
    if entry is None or entry.is_template:
        return
    try:
        aoi = parse_aoi(data, default_name=Path(label).stem)
    except AoiError:
        return  # submit's own reading reports it, with the enumerator's reasons
    from looking_glass.cli.serve import source_footprint

    session = dep.data_session() if "s3://" in entry.source else None
    footprint = source_footprint(entry.source, bands=entry.bands, session=session)
    check_aoi_meets_footprint(aoi.geometry, footprint, f"'{entry.name}' ({entry.source})")


def _worker_check(dep):
    """For a stack, what tells ``submit --wait`` that the job's AWS Batch workers failed (the
    embedded run fails the job itself after a few failed workers)."""
    if dep.kind != "stack":
        return None
    from looking_glass.pipeline.jobs import batch_failure, record_worker_error, store_for

    def check(job: dict):
        worker_job = job.get("worker_job")
        reason = batch_failure(dep.client("batch"), str(worker_job)) if worker_job else None
        if reason:
            record_worker_error(store_for(dep), job, reason)
        return reason

    return check


def _progress(job: dict) -> str:
    total = int(job.get("tiles_total", 0))
    final = int(job.get("tiles_final", 0))
    return f"{final:,}/{total:,} ({100 * final / total:.0f}%)" if total else "-"


def _status_cell(job: dict) -> str:
    """The job's status, marked while it runs when its current workers are failing (``worker_error``,
    see ``status``), or else when a run before ``retry`` started them had failed (``earlier_worker_error``)."""
    status = shown(job.get("status", ""))
    if job.get("status") not in ("RUNNING", "ENQUEUEING"):
        return status
    if job.get("worker_error"):
        return f"{status} (workers failing)"
    if job.get("earlier_worker_error"):
        return f"{status} (retried; earlier workers failed)"
    return status


def cmd_jobs(args) -> int:
    """List jobs, newest first (a table, or JSON)."""
    from looking_glass.pipeline.job_model import job_models_label
    from looking_glass.pipeline.jobs import mark_batch_failures, store_for
    from looking_glass.results.figures import plain
    from looking_glass.runtime.imagery_sources import job_imagery_label

    dep = _deployment(args)
    jobs = mark_batch_failures(dep, store_for(dep).list_jobs(limit=args.limit))
    if args.json:
        print(json.dumps([plain(j) for j in jobs], default=str))
        return 0
    # imagery: jobs of one AOI on two sources share a name; the source tells them apart
    # model: a resubmit after `models use` is a new job of the same name; the model tells them apart
    header = ("job_id", "status", "progress", "failed", "created_at", "finished_at", "name", "imagery", "model")
    rows = [
        (shown(j["job_id"]), _status_cell(j), _progress(j), f"{int(j.get('tiles_failed', 0)):,}",
         shown(j.get("created_at", "")), shown(j.get("finished_at", "") or "-"), shown(j.get("name", ""), 80),
         shown(job_imagery_label(j), 64), shown(job_models_label(j), 80))
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
    """Show one job in detail: counters, failure reasons, dead-letter messages."""
    from looking_glass.cli.status_lines import status_lines
    from looking_glass.pipeline.jobs import status, store_for
    from looking_glass.results.figures import plain

    dep = _deployment(args)
    job_id = resolve_job_ref(store_for(dep), args.job)
    info = plain(status(dep, job_id))
    if args.json:
        print(json.dumps(info, default=str))
        return 0
    for line in status_lines(info, args.job):
        print(line)
    return 0


def cmd_results(args) -> int:
    """Print or write a job's results per tile, per coarser tile or per polygon."""
    from looking_glass.pipeline.jobs import store_for
    from looking_glass.results.query import query, render

    if args.compare and args.totals:
        raise CommandError("--totals goes with the results rows, not with --compare")
    if args.compare:  # the mapping gap: looking_glass/cli/outlines.py
        from looking_glass.cli.outlines import cmd_compare_results

        return cmd_compare_results(args)
    polygons = None
    if args.within:
        from looking_glass.cli.outlines import within_polygons

        polygons = within_polygons(args.within)
    if args.totals and args.format == "geojson":
        raise CommandError("--totals goes with --format table or csv (GeoJSON output has a 'totals' member)")
    dep = _deployment(args)
    store = store_for(dep)
    job_id = resolve_job_ref(store, args.job)
    counts = _within_counts(args, dep, store, job_id, polygons) if polygons is not None else None
    mode, rows, tot = query(store, job_id, zoom=args.zoom, polygons=polygons, threads=_key_ranges(dep), counts=counts)
    text = render(args.format, mode, rows, tot, job_id, totals_only=args.totals)
    if args.out:
        from looking_glass.runtime.atomic import write_atomic

        write_atomic(args.out, text)
        what = f"the totals of {len(rows):,} rows" if args.totals else f"{len(rows):,} rows"
        print(f"wrote {args.out}: {what} ({args.format})", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def _within_counts(args, dep, store, job_id: str, polygons: list[dict]) -> list[int] | None:
    """The polygons' building counts on the job's outlines (a progress bar over the masks read
    unless --no-progress), or None with a note on stderr where the job stored no masks."""
    from looking_glass.pipeline.progress import CountBar
    from looking_glass.results.within_counts import within_outline_counts

    bar = None if args.no_progress else CountBar("count", "tile", file=sys.stderr)
    try:
        counts = within_outline_counts(store, dep.client("s3"), dep.resources.masks_bucket, job_id, polygons,
                                       progress=bar)
    finally:
        if bar is not None:
            bar.close()
    if counts is None:
        print("note: building_count is empty: the job stored no masks (its workers ran with LG_WRITE_MASKS=false), "
              "so there are no outlines to count; building_count_estimate is each tile's count times the "
              "fraction of the tile inside the polygon", file=sys.stderr)
    return counts


def _statuses(text: str) -> tuple[str, ...]:
    from looking_glass.pipeline.retry import RETRYABLE

    values = tuple(s.strip() for s in text.split(",") if s.strip())
    bad = [s for s in values if s not in RETRYABLE]
    if bad or not values:
        raise argparse.ArgumentTypeError(f"{text!r}: give a comma-separated list of {', '.join(RETRYABLE)}")
    return values


def cmd_retry(args) -> int:
    """Re-enqueue a job's tiles without a done result and move its dead letters back."""
    from looking_glass.pipeline.jobs import store_for
    from looking_glass.pipeline.retry import RETRYABLE, WorkersNotStarted, retry

    dep = _deployment(args)
    job_id = resolve_job_ref(store_for(dep), args.job)
    statuses = args.statuses or RETRYABLE
    try:
        out = retry(dep, job_id, statuses=statuses, force=args.force)
    except WorkersNotStarted as exc:  # the work is queued: say what was done, then why no workers (exit 1)
        _print_retried(job_id, statuses, {**exc.summary, "workers": "no workers started"})
        raise
    _print_retried(job_id, statuses, out)
    return 0


def _print_retried(job_id: str, statuses: tuple[str, ...], out: dict) -> None:
    """What ``retry`` did, in one line (a warning when the AOI could not be read)."""
    print(f"job {job_id}: {out['tiles_reset']:,} tiles reset ({', '.join(statuses)}), "
          f"{out['tiles_missing']:,} without any result, {out['dlq_messages_moved']:,} dead-letter messages moved back, "
          f"{out['tiles_enqueued']:,} tiles enqueued in {out['work_units_enqueued']:,} work units; {out['workers']}")
    if not out["aoi_read"]:
        print("warning: the job's AOI could not be read, so tiles that never got a result were not found",
              file=sys.stderr)


def cmd_map(args) -> int:
    """Write map.png and a self-contained map.html of a job."""
    from looking_glass.pipeline.jobs import store_for
    from looking_glass.results.webmap import make_map

    if args.compare:
        from looking_glass.cli.outlines import mapped_path

        mapped_path(args.compare)  # before anything is drawn
    dep = _deployment(args)
    store = store_for(dep)
    job_id = resolve_job_ref(store, args.job)
    reference = None
    if args.compare:  # opened (and refused: a file of Points) before map.png and map.html are drawn
        from looking_glass.results.gap import open_reference

        reference = open_reference(store, job_id, args.compare)
    imagery = map_imagery(dep, store, job_id, args.imagery)
    template = imagery.source if imagery is not None else None
    out = make_map(store, job_id, Path(args.out), template, zoom=args.zoom, colour_by=args.colour,
                   threads=_key_ranges(dep), session=dep.data_session(), bands=imagery.bands if imagery else None,
                   attribution=imagery.credit() if imagery else None, imagery_name=imagery.name if imagery else None)
    imagery = f", {out['imagery_tiles']:,} imagery tiles in {Path(args.out) / 'map_tiles'}" if out["imagery_tiles"] else ""
    print(f"wrote {out['png']} and {out['html']} ({out['features']:,} zoom-{out['zoom']} features{imagery})")
    if template and not out["imagery_shown"]:
        from looking_glass.results.basemap import MAX_BASEMAP_TILES

        print(f"warning: no imagery under map.html: {shown(template)} gave no tiles, or the job has more than "
              f"{MAX_BASEMAP_TILES:,} tiles (too many to write beside the page; pass an XYZ template with --imagery)",
              file=sys.stderr)
    if args.compare:  # the mapping gap layer: looking_glass/cli/outlines.py
        from looking_glass.cli.outlines import cmd_compare_map

        return cmd_compare_map(args, out["imagery_layer"], reference)  # the imagery map.html shows
    return 0


def add_commands(sub) -> None:
    """Add ``up``, ``submit``, ``jobs``, ``status``, ``results``, ``retry`` and ``map`` to ``sub``."""
    up = sub.add_parser("up", help="keep an embedded Looking Glass running for submit/jobs/results/...")
    up.add_argument("--workers", type=positive_int, default=2, help="local worker processes (default 2)")
    up.add_argument("--embedded", metavar="STATE", type=output_file, help="state file to write (default ~/.looking-glass/embedded.json)")
    up.add_argument("--dir", type=output_folder, help="working folder for worker logs (default: next to the state file)")
    add_run_options(up, named=True)  # --imagery [NAME=]SOURCE, --attribution NAME=TEXT (repeated), --bands, --model
    up.set_defaults(func=cmd_up)

    submit = sub.add_parser("submit", help="validate an AOI and upload it: prints the job id")
    submit.add_argument("aoi", nargs="?", help="AOI GeoJSON file (default with --imagery: the source's footprint)")
    submit.add_argument("--imagery", metavar="NAME",
                        help="a registered imagery source (`up --imagery NAME=SOURCE`, cdk.json imagery_sources); "
                             "default: the deployment's default source")
    submit.add_argument("--rerun", action="store_true",
                        help="a new job even when one already holds the results of this AOI, imagery and model")
    _add_target(submit)
    submit.add_argument("--name", help="label of the job (default: the AOI's name or file name)")
    submit.add_argument("--wait", action="store_true", help="follow the job with a progress bar until it is final")
    submit.add_argument("--timeout", type=positive_float, default=24 * 3600.0, help="seconds --wait waits")
    submit.add_argument("--no-progress", action="store_true", help="with --wait: no progress bar")
    submit.set_defaults(func=_aws_guard(cmd_submit))

    jobs = sub.add_parser("jobs", help="jobs, newest first: status, progress, created and finished, name")
    _add_target(jobs)
    jobs.add_argument("--limit", type=positive_int, default=50)
    jobs.add_argument("--json", action="store_true")
    jobs.set_defaults(func=_aws_guard(cmd_jobs))

    st = sub.add_parser("status", help="one job in detail: counters, failure reasons, dead-letter messages")
    st.add_argument("job", help=JOB_HELP)
    _add_target(st)
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=_aws_guard(cmd_status))

    res = sub.add_parser("results", help="per tile, per coarser tile (--zoom) or per polygon (--within)")
    res.add_argument("job", help=JOB_HELP)
    _add_target(res)
    how = res.add_mutually_exclusive_group()
    how.add_argument("--zoom", type=rollup_zoom, help="roll up to tiles of this zoom (quadkey prefix), 0..18")
    how.add_argument("--within", metavar="POLYGONS",
                     help="polygons (GeoJSON, GeoPackage, ...; any CRS): each gets its tiles, weighted by the "
                          "fraction inside, and the number of buildings (outlines) whose centre it holds; features "
                          "that are no polygon are skipped with a warning")
    res.add_argument("--format", choices=("table", "csv", "geojson"), default="table")
    res.add_argument("--totals", action="store_true",
                     help="print the totals (the rows' sums and the job's own counters) instead of the rows; table or csv")
    res.add_argument("--out", type=output_file, help="write to this file instead of standard output")
    res.add_argument("--compare", metavar="MAPPED",
                     help="the mapping gap against buildings already mapped (GeoJSON, GeoPackage, FlatGeobuf, "
                          ".osm.pbf; any CRS): predicted vs mapped area and count, unmapped area, completeness, rank")
    res.add_argument("--no-progress", action="store_true", help="with --compare or --within: no progress bar")
    res.set_defaults(func=_aws_guard(cmd_results))

    rt = sub.add_parser("retry", help="re-enqueue the tiles without a done result; move dead letters back")
    rt.add_argument("job", help=JOB_HELP)
    _add_target(rt)
    rt.add_argument("--statuses", type=_statuses, default=None,
                    help="which stored outcomes to redo (default failed,no_imagery,skipped); tiles with no result are always redone")
    rt.add_argument("--force", action="store_true", help="enqueue even if the tile queue is not empty")
    rt.set_defaults(func=_aws_guard(cmd_retry))

    mp = sub.add_parser("map", help="map.png and a self-contained map.html of a job")
    mp.add_argument("job", help=JOB_HELP)
    _add_target(mp)
    mp.add_argument("--out", required=True, type=output_folder, help="output folder")
    mp.add_argument("--zoom", type=rollup_zoom, help="roll up to this zoom (default: per tile, coarser past 20,000 tiles)")
    mp.add_argument("--colour", choices=("density", "area"), default="density")
    mp.add_argument("--imagery", help="imagery under the tiles: a registered source's name, an XYZ URL template or a GeoTIFF/COG (local or s3://); "
                                      "default: the registered source the job ran on, else the deployment's default imagery")
    mp.add_argument("--compare", metavar="MAPPED",
                    help="also gap.html: completeness against these mapped buildings and the buildings not yet mapped")
    mp.set_defaults(func=_aws_guard(cmd_map))
