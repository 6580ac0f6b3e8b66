"""``cover``, ``estimate`` and ``validate``: what an AOI means in tiles, before anything runs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from looking_glass.cli.common import non_negative_float, positive_float, positive_int, read_aoi, zoom
from looking_glass.display import shown
from looking_glass.grid import ZOOM
from looking_glass.pricing import (
    ASSUMED_G4DN_XLARGE_SPOT_USD_PER_HOUR,
    ASSUMED_GPU_TILES_PER_SECOND,
    ASSUMED_IMAGERY_BYTES_PER_TILE,
    G4DN_XLARGE_ON_DEMAND_USD_PER_HOUR,
    MEASURED_CPU_TILES_PER_SECOND,
)
from looking_glass.runtime.defaults import DEFAULT_TILES_PER_MESSAGE, DEFAULT_TILES_PER_WORKER


def cmd_cover(args) -> int:
    """Print the tiles that cover the AOI (xyz, quadkey, GeoJSON or a count)."""
    import mercantile

    from looking_glass.tiling.cover import count_tiles, iter_tiles, tile_runs

    _, aoi = read_aoi(args.aoi)
    _check_work(args.aoi, aoi, args.zoom)
    runs = tile_runs(aoi.geometry, args.zoom)
    for warning in aoi.warnings:
        print(f"warning: {shown(warning)}", file=sys.stderr)
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
    """Print the AOI's tiles, their area, SQS traffic, workers and cost: compute, requests, NAT
    traffic and storage each on its own line."""
    from looking_glass.tiling.cover import tile_runs
    from looking_glass.tiling.estimate import estimate

    _, aoi = read_aoi(args.aoi)
    _check_work(args.aoi, aoi, args.zoom)
    r = estimate(
        tile_runs(aoi.geometry, args.zoom),
        args.zoom,
        tiles_per_message=args.tiles_per_message,
        tiles_per_second=args.tiles_per_second,
        price_per_hour=args.price_per_hour,
        nat_bytes_per_tile=args.nat_bytes_per_tile,
        tiles_per_worker=args.tiles_per_worker,
    )
    note = _over_cap_note(r.tiles, args.zoom)
    if args.json:
        print(json.dumps(r.to_dict()))
        if note:
            print(note, file=sys.stderr)  # standard output stays one JSON document
        return 0
    print(f"{f'tiles (zoom {args.zoom}):':<23}{r.tiles:,}")
    print(f"area of those tiles:   {r.tiles_area_km2:,.3f} km2")
    print(f"SQS messages:          {r.sqs_messages:,} ({r.sqs_send_requests:,} send requests)")
    print(f"workers:               {r.workers:,}")
    print(f"worker time:           {r.worker_hours:,.2f} instance-hours at {r.tiles_per_second:g} tiles/s, "
          f"with {r.worker_start_hours * 60:g} min of start-up per worker")
    print(f"compute:               USD {r.compute_usd:,.4f} at USD {r.price_per_hour:g}/instance-hour")
    print(f"requests:              USD {r.requests_usd:,.4f} (S3 {r.s3_usd:,.4f}, DynamoDB {r.dynamodb_usd:,.4f}, "
          f"SQS {r.sqs_usd:,.4f})")
    print(f"NAT gateway:           USD {r.nat_usd:,.4f} ({r.nat_bytes_per_tile:,.0f} bytes of imagery per tile)")
    print(f"total:                 USD {r.total_usd:,.4f} (compute + requests + NAT)")
    print(f"storage:               USD {r.storage_usd_per_month:,.4f} per month (results in S3 and DynamoDB)")
    if note:
        print(note)
    return 0


def _over_cap_note(tiles: int, zoom_level: int) -> str | None:
    """The note for an estimate of ``tiles`` at ``zoom_level`` when they are more than one job
    may hold (the enumerator's cap, ``LG_MAX_TILES_PER_JOB``; jobs run zoom-18 tiles, so only
    a zoom-18 estimate is compared), else None: validate and submit refuse such an AOI."""
    from looking_glass.tiling.plan import job_tile_cap

    cap = job_tile_cap()
    if zoom_level != ZOOM or tiles <= cap:
        return None
    return (f"note: the AOI's {tiles:,} zoom-{ZOOM} tiles exceed the cap of {cap:,} tiles per job "
            "(LG_MAX_TILES_PER_JOB): validate and submit refuse it; split it into AOIs of at most "
            f"{cap:,} tiles each")


def cmd_validate(args) -> int:
    """Check the AOI with the enumerator's rules (the same reading, limits and reasons:
    :func:`looking_glass.tiling.plan.cover_within_limits` with the tile cap of
    ``LG_MAX_TILES_PER_JOB``) and print its zoom-18 tile count; with ``--imagery`` (a GeoTIFF or
    mosaic) refuse an AOI that does not intersect the imagery's footprint."""
    from looking_glass.pipeline.enumerator import MAX_AOI_BYTES
    from looking_glass.tiling.aoi import AoiError
    from looking_glass.tiling.cover import count_tiles
    from looking_glass.tiling.plan import cover_within_limits, job_tile_cap

    size = Path(args.aoi).stat().st_size if Path(args.aoi).is_file() else 0
    if size > MAX_AOI_BYTES:  # the enumerator's first check, before reading
        raise AoiError(f"{args.aoi}: AOI file is {size} bytes, above the {MAX_AOI_BYTES} byte limit")
    _, aoi = read_aoi(args.aoi)
    for warning in aoi.warnings:
        print(f"warning: {shown(warning)}")
    try:
        runs = cover_within_limits(aoi.geometry, ZOOM, job_tile_cap())
    except AoiError as exc:
        raise AoiError(f"{args.aoi}: {exc}") from None
    if args.imagery:  # a GeoTIFF/mosaic: the AOI must meet its footprint, or no tile has imagery
        from looking_glass.cli.serve import source_footprint
        from looking_glass.imagery.overlap import AoiOutsideImagery, check_aoi_meets_footprint

        try:
            check_aoi_meets_footprint(aoi.geometry, source_footprint(args.imagery), args.imagery)
        except AoiOutsideImagery as exc:
            raise AoiOutsideImagery(f"{args.aoi}: {exc}") from None
    print(f"{shown(args.aoi)}: valid AOI '{shown(aoi.name)}', {count_tiles(runs):,} zoom-{ZOOM} tiles"
          + (f", meets the footprint of {shown(args.imagery)}" if args.imagery else ""))
    return 0


def _check_work(path: str, aoi, zoom_level: int) -> None:
    """Refuse (AoiError) an AOI whose cover at ``zoom_level`` would take more work than the
    enumerator allows (see :mod:`looking_glass.tiling.plan`), before it runs."""
    from looking_glass.tiling.aoi import AoiError
    from looking_glass.tiling.plan import MAX_EDGE_ROWS, edge_rows

    crossed = edge_rows(aoi.geometry, zoom_level)
    if crossed > MAX_EDGE_ROWS:
        raise AoiError(
            f"{path}: the AOI's edges cross {crossed:,} zoom-{zoom_level} tile rows in all, above the "
            f"{MAX_EDGE_ROWS:,} a cover may take: simplify its outline or split it"
        )


def add_commands(sub) -> None:
    """Add ``cover``, ``estimate`` and ``validate`` to the subcommand parsers ``sub``."""
    cover = sub.add_parser("cover", help="print the tiles that cover an AOI")
    cover.add_argument("aoi", help="AOI GeoJSON file")
    cover.add_argument("--zoom", type=zoom, default=ZOOM)
    cover.add_argument("--format", choices=("xyz", "quadkey", "geojson", "count"), default="xyz")
    cover.set_defaults(func=cmd_cover)

    est = sub.add_parser("estimate", help="tiles, area, SQS traffic, workers and cost (compute, requests, storage) of an AOI")
    est.add_argument("aoi", help="AOI GeoJSON file")
    est.add_argument("--zoom", type=zoom, default=ZOOM)
    est.add_argument("--tiles-per-message", type=positive_int, default=DEFAULT_TILES_PER_MESSAGE)
    est.add_argument("--tiles-per-second", type=positive_float, default=ASSUMED_GPU_TILES_PER_SECOND,
                     help=f"one worker's throughput (default {ASSUMED_GPU_TILES_PER_SECOND:g}: g4dn.xlarge, "
                          f"assumed; {MEASURED_CPU_TILES_PER_SECOND:g} was measured on 2 CPU cores)")
    est.add_argument("--price-per-hour", type=non_negative_float, default=G4DN_XLARGE_ON_DEMAND_USD_PER_HOUR,
                     help=f"USD per worker instance-hour (default {G4DN_XLARGE_ON_DEMAND_USD_PER_HOUR:g}: g4dn.xlarge "
                          f"on-demand, us-east-1; spot is about {ASSUMED_G4DN_XLARGE_SPOT_USD_PER_HOUR:g})")
    est.add_argument("--nat-bytes-per-tile", type=non_negative_float, default=ASSUMED_IMAGERY_BYTES_PER_TILE,
                     help=f"imagery bytes per tile through the NAT gateway (default {ASSUMED_IMAGERY_BYTES_PER_TILE:,}; "
                          "0 for worker_subnets=public)")
    est.add_argument("--tiles-per-worker", type=positive_int, default=DEFAULT_TILES_PER_WORKER,
                     help=f"one worker per this many tiles, as the stack's tiles_per_worker (default {DEFAULT_TILES_PER_WORKER:,})")
    est.add_argument("--json", action="store_true", help="print JSON")
    est.set_defaults(func=cmd_estimate)


def add_validate(sub) -> None:
    """Add ``validate`` (listed after the data and model commands in ``--help``)."""
    validate = sub.add_parser("validate", help="check an AOI with the enumerator's rules")
    validate.add_argument("aoi", help="AOI GeoJSON file")
    validate.add_argument("--imagery", metavar="SOURCE",
                          help="a GeoTIFF/COG (local or s3://) or mosaic: the AOI must intersect its footprint")
    validate.set_defaults(func=cmd_validate)
