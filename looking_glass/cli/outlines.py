"""``export``: a job's building outlines as GeoJSON, GeoPackage, FlatGeobuf or JOSM ``.osm``; and
the mapping gap of ``results --compare`` / ``map --compare`` (buildings not yet mapped)."""

from __future__ import annotations

import sys
from pathlib import Path

from looking_glass.cli.common import (
    JOB_HELP,
    CommandError,
    add_target,
    aws_guard,
    map_imagery,
    output_file,
    resolve_job_ref,
)


def _job(args):
    """(deployment, results store, job id) of ``args.job`` on ``--stack``/``--embedded``."""
    from looking_glass.local.deployment import resolve
    from looking_glass.pipeline.jobs import store_for

    dep = resolve(args.stack, args.embedded)
    store = store_for(dep)
    return dep, store, resolve_job_ref(store, args.job)


def _attribution(dep, store, job_id: str) -> str:
    """The registered attribution of the imagery job ``job_id`` ran on ("" when none), for the
    export's metadata: the source ``map`` credits (``cli.common.map_imagery``)."""
    source = map_imagery(dep, store, job_id, None)
    return (source.attribution or "") if source is not None else ""


UPLOAD_REVIEW = "review every outline against the imagery before uploading any to OpenStreetMap"
GAP_LEAD = ("the buildings not yet mapped are the model's buildings that no mapped building touches, "
            "its false detections included; ")
GAP_REVIEW = "review them against the imagery before acting on the gap"


def accuracy_note(dep, store, job_id: str, lead: str = "", review: str = UPLOAD_REVIEW) -> str:
    """The one ``note:`` line on stderr that quotes the real-imagery figure the sidecar of the
    model that produced the job's tiles records (the first of its first 100 tile results that
    names one; ``model.registry.run_sidecar``, ``real_imagery_figure``), or says it records none:
    ``lead`` before it (what the printed numbers count), ``review`` after it (what to do). An
    ``.osm`` export prints it before a mapper uploads anything (the defaults); ``results`` and
    ``map --compare`` with :data:`GAP_LEAD` and :data:`GAP_REVIEW`, as the gap counts the model's
    false detections too."""
    import itertools

    from looking_glass.model.registry import real_imagery_figure, run_label, run_sidecar

    items = itertools.islice(store.query_tiles(job_id, attributes=("model_id", "model_version")), 100)
    run = next((run_label(i["model_id"], i.get("model_version")) for i in items if i.get("model_id")), "")
    sidecar = run_sidecar(dep.client("s3"), dep.resources.masks_bucket, run) if run else None
    figure = real_imagery_figure(sidecar) if sidecar else None
    model = f"model {run}" if run else "the model of this job"
    if figure is None:
        return f"note: {lead}{model} has no recorded evaluation on real imagery: {review}"
    return f"note: {lead}{model} recorded {figure}: {review}"


def cmd_export(args) -> int:
    """Write the buildings of a job, stitched across tiles, to ``--out``."""
    from looking_glass.outlines.stitch import OutlineOptions
    from looking_glass.pipeline.progress import CountBar
    from looking_glass.results.buildings import check_out_path, export_buildings, export_format

    check_out_path(args.out)  # before any AWS call
    fmt = export_format(args.out, args.format)
    if args.unmapped is not None:
        return _export_unmapped(args, fmt, mapped_path(args.unmapped, "--unmapped"))
    dep, store, job_id = _job(args)
    options = OutlineOptions(regularise=args.regularise)  # the rule of the tiles' building_count
    bar = None if args.no_progress else CountBar("export", "tile", file=sys.stderr)
    try:
        report = export_buildings(store, dep.client("s3"), dep.resources.masks_bucket, job_id, args.out, fmt,
                                  options, progress=bar, attribution=_attribution(dep, store, job_id))
    finally:
        if bar is not None:
            bar.close()
    counted = "" if report.building_count is None else f"; the tiles' building_count adds up to {report.building_count:,}"
    print(f"wrote {args.out}: {report.buildings:,} buildings ({fmt}) from {report.tiles_done:,} done tiles{counted}")
    note = report.missing_note()
    if note:
        print(f"warning: {note}", file=sys.stderr)
    if fmt == "osm":
        print(accuracy_note(dep, store, job_id), file=sys.stderr)
    return 0


def _export_unmapped(args, fmt: str, mapped: str) -> int:
    """``export JOB --out FILE --unmapped MAPPED``: only the buildings no building of MAPPED
    touches (the mapping gap's to-do list), e.g. as .osm for JOSM."""
    from looking_glass.outlines.stitch import OutlineOptions
    from looking_glass.results.gap import export_unmapped

    dep, store, job_id = _job(args)
    gap = _gap(args, dep, store, job_id, run=lambda bar: export_unmapped(
        store, dep.client("s3"), dep.resources.masks_bucket, job_id, mapped, args.out, fmt,
        OutlineOptions(regularise=args.regularise), progress=bar, attribution=_attribution(dep, store, job_id)))
    s = gap.summary
    print(f"wrote {args.out}: {gap.unmapped_count:,} buildings not yet mapped ({fmt}) of {s['predicted_count']:,} "
          f"found in {s['tiles_compared']:,} done tiles; {s['mapped_count']:,} mapped buildings there ({mapped})")
    if fmt == "osm":
        print(accuracy_note(dep, store, job_id), file=sys.stderr)
    return 0


def mapped_path(text: str, option: str = "--compare") -> str:
    """``--compare MAPPED`` (or ``option``): an existing file (GeoJSON, GeoPackage, FlatGeobuf,
    .osm.pbf, ...); CommandError naming the option otherwise."""
    if not Path(text).is_file():
        raise CommandError(f"{option} {text}: no such file (give the mapped buildings: GeoJSON, GeoPackage, "
                           "FlatGeobuf or an OpenStreetMap .osm.pbf extract)")
    return text


def within_polygons(path: str) -> list[dict]:
    """``--within POLYGONS``: the polygons of a file, read by the shared footprint rule
    (``results.polygons.read_within_polygons``: features that are no polygon skipped in one
    ``warning:`` line, printed here; any CRS, reprojected); every error names the file. Raises
    CommandError (missing or unreadable) or ResultsError."""
    from looking_glass.results.polygons import read_within_polygons

    source = f"--within {path}"
    p = Path(path)
    if not p.is_file():
        raise CommandError(f"{source}: polygons file not found (give a GeoJSON of polygons, e.g. task squares)")
    try:
        with p.open("rb"):
            pass
    except OSError as e:
        raise CommandError(f"{source}: cannot read it ({e.strerror or e})") from None
    polygons, notes = read_within_polygons(path)
    for note in notes:
        print(f"warning: {note}", file=sys.stderr)
    return polygons


def _gap(args, dep, store, job_id, zoom=None, polygons=None, unmapped_out=None, keep_mapped=0, run=None,
         reference=None):
    """The job's mapping gap (``run(bar)`` instead of ``job_gap`` when given) against ``reference``
    (``results.gap.open_reference``'s, already open) or ``args.compare``, with a progress bar over
    the masks read and each warning about the mapped file (skipped features) printed as one
    ``warning:`` line."""
    import warnings

    from looking_glass.pipeline.progress import CountBar
    from looking_glass.results.gap import job_gap

    bar = None if getattr(args, "no_progress", False) else CountBar("compare", "tile", file=sys.stderr)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            gap = run(bar) if run is not None else job_gap(
                store, dep.client("s3"), dep.resources.masks_bucket, job_id, reference or args.compare, zoom=zoom,
                polygons=polygons, progress=bar, unmapped_out=unmapped_out, keep_mapped=keep_mapped)
    finally:
        if bar is not None:
            bar.close()
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    return gap


def cmd_compare_results(args) -> int:
    """``results JOB --compare MAPPED [--zoom Z | --within POLYGONS]``: the mapping gap as a
    table, CSV or GeoJSON."""
    from looking_glass.results.gap import count_note, render_gap

    mapped = mapped_path(args.compare)
    polygons = within_polygons(args.within) if args.within else None
    args.compare = mapped
    dep, store, job_id = _job(args)
    gap = _gap(args, dep, store, job_id, zoom=args.zoom, polygons=polygons)
    text = render_gap(args.format, gap)
    note = count_note(gap) if args.format != "table" else None  # the table has it as its last line
    if note:
        print(note, file=sys.stderr)
    if args.out:
        from looking_glass.runtime.atomic import write_atomic

        write_atomic(args.out, text)
        print(f"wrote {args.out}: {len(gap.rows):,} rows ({args.format})", file=sys.stderr)
    else:
        sys.stdout.write(text)
        sys.stdout.flush()  # the table before the note, on a terminal showing both
    print(accuracy_note(dep, store, job_id, GAP_LEAD, GAP_REVIEW), file=sys.stderr)
    return 0


def cmd_compare_map(args, imagery: dict | None, reference=None) -> int:
    """``map JOB --compare MAPPED --out DIR``: gap.html, gap.geojson and gap-buildings.geojson
    against ``reference``, the mapped buildings ``cmd_map`` opened
    (``results.gap.open_reference``, which refuses a file with nothing to compare against)
    before drawing anything."""
    from looking_glass.results.gapmap import MAX_MAPPED, write_gap_map

    dep, store, job_id = _job(args)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    gap = _gap(args, dep, store, job_id, zoom=args.zoom, unmapped_out=out_dir / "gap-buildings.geojson",
               keep_mapped=MAX_MAPPED, reference=reference)
    job = store.get_job(job_id) or {}
    title = f"{job.get('name', job_id)} ({job_id[:8]}): buildings not yet mapped"
    out = write_gap_map(gap, out_dir, imagery, title)
    print(f"wrote {out['html']}, {out['geojson']} ({out['features']:,} cells) and {out['buildings']} "
          f"({gap.unmapped_count:,} buildings not yet mapped; gap.html also draws {out['mapped']:,} mapped footprints)")
    sys.stdout.flush()
    print(accuracy_note(dep, store, job_id, GAP_LEAD, GAP_REVIEW), file=sys.stderr)
    return 0


# The keys of looking_glass.results.buildings.EXPORT_FORMATS, written out: every command builds
# this parser, and importing that module loads boto3 and scipy (a test keeps the two equal).
EXPORT_FORMAT_NAMES = ("geojson", "gpkg", "fgb", "osm")


def add_commands(sub) -> None:
    """Add ``export`` to the subcommand parsers ``sub``."""
    ex = sub.add_parser("export", help="a job's building outlines (GeoJSON, GeoPackage, FlatGeobuf, JOSM .osm)")
    ex.add_argument("job", help=JOB_HELP)
    add_target(ex)
    ex.add_argument("--out", required=True, type=output_file, help="file to write (replaced if it exists)")
    ex.add_argument("--format", choices=EXPORT_FORMAT_NAMES,
                    help="geojson, gpkg (GeoPackage), fgb (FlatGeobuf) or osm (JOSM XML); default: from --out's suffix")
    ex.add_argument("--regularise", action="store_true",
                    help="square the corners on each building's dominant orientation (editor-ready shapes)")
    ex.add_argument("--unmapped", metavar="MAPPED",
                    help="write only the buildings that no building in MAPPED touches (the buildings already mapped: "
                         "GeoJSON, GeoPackage, FlatGeobuf, .osm/.osm.pbf; any CRS): a to-do list, e.g. as .osm for JOSM")
    ex.add_argument("--no-progress", action="store_true", help="no progress bar")
    ex.set_defaults(func=aws_guard(cmd_export))
