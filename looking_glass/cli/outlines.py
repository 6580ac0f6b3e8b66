"""``export``: a job's building outlines as GeoJSON, GeoPackage, FlatGeobuf or JOSM ``.osm``; and
the mapping gap of ``results --compare`` / ``map --compare`` (buildings not yet mapped)."""

from __future__ import annotations

import sys

from looking_glass.cli.common import add_target, aws_guard


def _job(args):
    """(deployment, results store, job id) of ``args.job`` on ``--stack``/``--embedded``."""
    from looking_glass.local.deployment import resolve
    from looking_glass.pipeline.jobref import resolve_job
    from looking_glass.pipeline.jobs import store_for

    dep = resolve(args.stack, args.embedded)
    store = store_for(dep)
    return dep, store, resolve_job(store, args.job)


def cmd_export(args) -> int:
    """Write the buildings of a job, stitched across tiles, to ``--out``."""
    from looking_glass.outlines.stitch import OutlineOptions
    from looking_glass.results.buildings import check_out_path, export_buildings, export_format

    check_out_path(args.out)  # before any AWS call
    fmt = export_format(args.out, args.format)
    dep, store, job_id = _job(args)
    options = OutlineOptions(regularise=args.regularise)  # the rule of the tiles' building_count
    bar = None
    if not args.no_progress:
        from tqdm import tqdm

        bar = tqdm(total=0, unit="tile", desc="export", file=sys.stderr, mininterval=1.0)
    try:
        report = export_buildings(store, dep.client("s3"), dep.resources.masks_bucket, job_id, args.out, fmt,
                                  options, progress=bar)
    finally:
        if bar is not None:
            bar.close()
    counted = "" if report.building_count is None else f"; the tiles' building_count adds up to {report.building_count:,}"
    print(f"wrote {args.out}: {report.buildings:,} buildings ({fmt}) from {report.tiles_done:,} done tiles{counted}")
    if report.tiles_missing:
        print(f"warning: job {job_id} is {report.status}: {report.tiles_missing:,} of {report.tiles_total:,} tiles "
              f"are not in the export ({report.tiles_pending:,} without a result yet, {report.tiles_not_done:,} "
              "failed, without imagery or skipped); export again when the job is complete", file=sys.stderr)
    return 0


def add_commands(sub) -> None:
    """Add ``export`` to the subcommand parsers ``sub``."""
    from looking_glass.results.buildings import EXPORT_FORMATS

    ex = sub.add_parser("export", help="a job's building outlines (GeoJSON, GeoPackage, FlatGeobuf, JOSM .osm)")
    ex.add_argument("job", help="job id, the start of one, or the job's name (as `jobs` lists them)")
    add_target(ex)
    ex.add_argument("--out", required=True, help="file to write (replaced if it exists)")
    ex.add_argument("--format", choices=tuple(EXPORT_FORMATS),
                    help="geojson, gpkg (GeoPackage), fgb (FlatGeobuf) or osm (JOSM XML); default: from --out's suffix")
    ex.add_argument("--regularise", action="store_true",
                    help="square the corners on each building's dominant orientation (editor-ready shapes)")
    ex.add_argument("--no-progress", action="store_true", help="no progress bar")
    ex.set_defaults(func=aws_guard(cmd_export))
