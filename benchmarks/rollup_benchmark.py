"""`results --zoom 12` on a 100,000-tile job in the embedded (moto) store: time and DynamoDB requests.

Fills a fresh results table on an in-process moto server with one job of N zoom-18 tiles written
into their packs as the worker writes them (UpdateItem per pack, provenance included), then runs
the rollup as the CLI does (``results.query``: key-range queries only) with 1 and with 4 parallel
key ranges, counting every DynamoDB request with botocore's event hooks, and checks the rollup
against the job's totals.

    .venv/bin/python benchmarks/rollup_benchmark.py [--tiles 100000] [--zoom 12]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from collections import Counter
from decimal import Decimal

import boto3  # noqa: E402

from looking_glass.grid import quadkey  # noqa: E402
from looking_glass.local.embedded import LOCAL_AWS_ENV  # noqa: E402
from looking_glass.pipeline.metering import item_bytes  # noqa: E402
from looking_glass.pipeline.packs import pack_of, pack_sort_key  # noqa: E402
from looking_glass.pipeline.store import COMPLETE, ResultsStore, TileResult, marshal  # noqa: E402
from looking_glass.results.query import query, render  # noqa: E402
from looking_glass.runtime.resources import TABLE_PARTITION_KEY, TABLE_SORT_KEY, table_definition  # noqa: E402

X0, Y0 = 151_900, 131_400  # Kigali


def fill(ddb, table: str, job_id: str, tiles: int) -> tuple[Decimal, Counter, float, int]:
    """Write ``tiles`` random tile results into the job's packs; (total area, statuses, seconds,
    UpdateItem requests)."""
    store, calls = ResultsStore(ddb, table), Counter()
    ddb.meta.events.register("before-call.dynamodb.UpdateItem", lambda model, **_: calls.update([model.name]))
    rng = random.Random(7)
    width = 400
    provenance = {"model_id": "deeplabv3plus-synthetic", "model_version": "1", "imagery": "https://tiles.example/{z}/{x}/{y}.png",
                  "threshold": Decimal("0.5"), "zoom": 18, "processed_at": "2026-11-24T00:00:00+00:00"}
    total = Decimal(0)
    counts: Counter = Counter()
    batch, requests = [], 0
    started = time.perf_counter()
    for i in range(tiles):
        x, y = X0 + i % width, Y0 + i // width
        status = rng.choices(["done", "failed", "no_imagery", "skipped"], [0.94, 0.02, 0.02, 0.02])[0]
        area = Decimal(rng.randint(0, 8_000_000)) / 1000 if status == "done" else Decimal(0)
        total += area
        counts[status] += 1
        item = TileResult(x, y, 18, quadkey(x, y, 18), status, area, int(area * 10),
                          "HTTP 500" if status == "failed" else None,
                          f"masks/{job_id}/18/{x}/{y}.png" if status == "done" else None).item(job_id, provenance)
        batch.append(item)
        if len(batch) == 2 * width or i == tiles - 1:  # two rows at a time: whole packs less often split
            before = calls.get("UpdateItem", 0)
            store._write_packs(job_id, batch)
            requests += calls.get("UpdateItem", 0) - before
            batch = []
    return total, counts, time.perf_counter() - started, requests


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", type=int, default=100_000)
    parser.add_argument("--zoom", type=int, default=12)
    parser.add_argument("--ranges", type=int, nargs="+", default=[1, 4],
                        help="parallel key ranges to try (the CLI uses 1 on the embedded run, 4 on a stack)")
    args = parser.parse_args()

    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    os.environ.update({**LOCAL_AWS_ENV, "AWS_ENDPOINT_URL": f"http://{host}:{port}"})
    try:
        ddb = boto3.client("dynamodb")
        table = "bench-results"
        ddb.create_table(**table_definition(table))
        job_id = "b" * 24
        store = ResultsStore(ddb, table)
        total, counts, fill_s, fill_requests = fill(ddb, table, job_id, args.tiles)
        store.create_job(job_id, {"status": COMPLETE, "name": "benchmark", "tiles_total": args.tiles,
                                  "tiles_final": args.tiles, "building_area_m2": total,
                                  **{f"tiles_{s}": n for s, n in counts.items()}})
        print(f"filled {args.tiles:,} tiles in {fill_s:.1f} s ({fill_requests:,} UpdateItem requests of tile packs)")

        calls: Counter = Counter()
        ddb.meta.events.register("before-call.dynamodb.*", lambda model, **kw: calls.update([model.name]))
        for threads in args.ranges:
            calls.clear()
            started = time.perf_counter()
            mode, rows, tot = query(store, job_id, zoom=args.zoom, threads=threads)
            text = render("csv", mode, rows, tot, job_id)
            elapsed = time.perf_counter() - started
            assert tot["building_area_m2"] == total.quantize(Decimal("0.001")), (tot["building_area_m2"], total)
            assert tot["tiles"] == args.tiles and tot["tiles_done"] == counts["done"]
            print(
                f"results --zoom {args.zoom} ({threads} key range{'s' if threads > 1 else ''} in parallel): "
                f"{elapsed:.2f} s, {len(rows):,} rows, {sum(calls.values())} DynamoDB requests "
                f"({', '.join(f'{n} {op}' for op, n in sorted(calls.items()))}), no Scan: {'Scan' not in calls}; "
                f"{len(text):,} bytes of CSV"
            )
        from looking_glass.results.query import fetch_tiles, rollup_rows

        items = fetch_tiles(store, job_id, threads=1)
        started = time.perf_counter()
        rollup_rows(items, args.zoom)
        print(f"of which the rollup arithmetic on {len(items):,} items: {time.perf_counter() - started:.2f} s "
              "(the rest is reading: moto filters and sorts the whole partition for every page)")
        key = {TABLE_PARTITION_KEY: job_id, TABLE_SORT_KEY: pack_sort_key(pack_of(quadkey(X0 + 4, Y0, 18)))}
        pack = ddb.get_item(TableName=table, Key=marshal(key))["Item"]
        print(f"one full pack of {sum(k.startswith('t') for k in pack)} tiles is {item_bytes(pack):,} bytes as DynamoDB sizes it")
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
