"""Worker throughput, in one run, against the local tile server with realistic latency:

(a) the bare model on the same tiles already in memory (the ceiling);
(b) the worker end to end (SQS on moto, HTTP downloads, inference, DynamoDB writes, masks to S3);
(c) a loop in the style of the 2018 original: one SQS message per tile, serial downloads,
    ``predict`` on batches of 10, results written one by one.

Prints tiles/s and the ratios worker/bare (goal >= 0.9) and worker/original (goal >= 5), and
for the worker how long the model ran and how long each AWS operation took: on one small
machine the embedded endpoint (moto) competes with the model for the same cores, and its
slowest operations show where the worker waits.

It also counts the requests of (b) as they are sent (``looking_glass.pipeline.metering``: botocore
hooks on the worker's S3, SQS and DynamoDB clients and on the client that enqueues the units, ten
to a SendMessageBatch as the enumerator does) and prices them per million tiles at the list prices
of ``looking_glass.pricing``. With ``--json`` the last line is one JSON object: worker_tiles_per_s,
bare_tiles_per_s, worker_over_bare, s3_requests_per_tile (S3 requests of any kind),
s3_put_requests_per_tile, s3_get_requests_per_tile, dynamodb_wru_per_tile (write request units as
DynamoDB bills them), dynamodb_rru_per_tile, sqs_requests_per_tile (billed SQS requests),
aws_usd_per_million_tiles (those requests at list prices), and the run's settings and load average.

    .venv/bin/python benchmarks/worker_benchmark.py [--tiles 512] [--latency-ms 50] [--batch-size 32] [--no-masks] [--json]
        [--skip-original] [--pin-services] [--trace] [--tile-format png|jpeg]

``--pin-services`` is a variant, labelled ``services_pinned`` in the JSON: moto and the tile
server run on the last CPU only (``os.sched_setaffinity``), as AWS and a tile server run on other
machines in production; the default run shares every core with them. ``--trace`` prints the
worker's per-unit timeline and CPU seconds per stage (``benchmarks/worker_trace.py``).
``--tile-format jpeg`` has the tile server send JPEG tiles (quality 90, the synthetic tile
server's ``.jpg``), as satellite imagery services do, instead of PNG (the default, kept so that
runs compare with the earlier ones); (a) and (b) see the same decoded tiles either way.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import boto3
import numpy as np
import requests

from looking_glass.grid import quadkey
from looking_glass.imagery.tiles import decode_tile
from looking_glass.local.embedded import LOCAL_AWS_ENV
from looking_glass.model.segmenter import Segmenter, building_area_m2
from looking_glass.pipeline.metering import S3_GET_CLASS, RequestMeter, item_bytes
from looking_glass.pipeline.store import RUNNING, ResultsStore, TileResult, area_decimal
from looking_glass.pipeline.workunits import pack_runs
from looking_glass.pricing import request_usd_per_million_tiles
from looking_glass.runtime.resources import ResourceNames, create_embedded_resources
from looking_glass.runtime.settings import WorkerSettings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            requests.get(url, timeout=1)
            return
        except requests.RequestException:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


class CallTimer:
    """Wall time spent in each AWS operation (botocore events), summed over threads."""

    def __init__(self, *clients):
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self._lock = threading.Lock()
        for client in clients:
            client.meta.events.register("before-call.*.*", self._before)
            client.meta.events.register("after-call.*.*", self._after)

    def _before(self, context, **_):
        context["lg_started"] = time.perf_counter()

    def _after(self, model, context, **_):
        elapsed = time.perf_counter() - context.pop("lg_started", time.perf_counter())
        with self._lock:
            self.seconds[model.name] = self.seconds.get(model.name, 0.0) + elapsed
            self.calls[model.name] = self.calls.get(model.name, 0) + 1

    def report(self) -> str:
        rows = sorted(self.seconds.items(), key=lambda kv: -kv[1])
        return "\n".join(
            f"    {name:<20}{self.calls[name]:>6} calls {seconds:>8.2f} s in all {seconds / self.calls[name] * 1000:>7.0f} ms each"
            for name, seconds in rows
        )


def tiles_for(n: int) -> np.ndarray:
    width = 32
    rows = -(-n // width)
    runs = [[132400 + r, 152900, 152900 + min(width, n - r * width)] for r in range(rows)]
    return np.array(runs)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tiles", type=int, default=512)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--no-masks", action="store_true",
                        help="the worker writes no result objects to S3 (the 2018-style loop never does)")
    parser.add_argument("--json", action="store_true", help="end with one line of JSON (see the docstring)")
    parser.add_argument("--skip-original", action="store_true", help="leave out (c), the 2018-style loop")
    parser.add_argument("--pin-services", action="store_true",
                        help="run moto and the tile server (stand-ins for AWS and a remote tile server) on the "
                             "last CPU only, so that they take no other core from the worker (a labelled variant)")
    parser.add_argument("--trace", action="store_true",
                        help="print (b)'s per-unit timeline and CPU per stage (benchmarks/worker_trace.py)")
    parser.add_argument("--tile-format", choices=("png", "jpeg"), default="png",
                        help="the tiles the tile server sends (default png; satellite imagery services send jpeg)")
    args = parser.parse_args()
    if args.tiles < 1:
        parser.error("--tiles must be at least 1")
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    # moto and the tile server run in their own processes, as AWS and an imagery provider are
    # elsewhere in production: in this process they would compete with the worker for the GIL.
    moto_port = free_port()
    # (moto.server with its DynamoDB requests handled one at a time, as DynamoDB applies each
    # write to an item atomically: looking_glass.local.moto_dynamodb)
    moto = subprocess.Popen([sys.executable, "-m", "looking_glass.local.moto_dynamodb", "-H", "127.0.0.1", "-p", str(moto_port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    tiles_port = free_port()
    tiles_proc = subprocess.Popen([sys.executable, "-m", "looking_glass.cli.main", "serve-synthetic", "--port", str(tiles_port),
                                   "--latency-ms", str(args.latency_ms)], stdout=subprocess.DEVNULL)
    if args.pin_services:
        last_cpu = max(os.sched_getaffinity(0))
        for service in (moto, tiles_proc):
            os.sched_setaffinity(service.pid, {last_cpu})
    os.environ.update({**LOCAL_AWS_ENV, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{moto_port}"})
    wait_for(f"http://127.0.0.1:{moto_port}/moto-api/")
    extension = {"png": "png", "jpeg": "jpg"}[args.tile_format]
    template = f"http://127.0.0.1:{tiles_port}/{{z}}/{{x}}/{{y}}.{extension}"
    wait_for(template.format(z=0, x=0, y=0))
    session = boto3.session.Session()
    tiles = tiles_for(args.tiles)
    tile_list = [(x, y, 18) for y, a, b in tiles.tolist() for x in range(a, b)]
    segmenter = Segmenter.load()
    print(f"model {segmenter.info.model_id}; {len(tile_list)} {args.tile_format.upper()} tiles; tile latency {args.latency_ms:g} ms; "
          f"worker writes masks: {not args.no_masks}; moto and the tile server pinned to the last CPU: {args.pin_services}")
    # (a) and (b) run this one segmenter: the same runtime, threads and batch size.
    print(f"runtime (bare and worker): {segmenter.describe()}; batch {args.batch_size}")

    server = type("Server", (), {"url_template": template})
    try:
        # Warm the server's render cache so every method sees only the configured latency (the
        # same requests also give (a) its tiles; in parallel, as nothing is timed yet).
        def download(tile):
            resp = requests.get(server.url_template.format(x=tile[0], y=tile[1], z=tile[2]), timeout=30)
            resp.raise_for_status()
            return resp.content

        with ThreadPoolExecutor(16) as pool:
            bodies = list(pool.map(download, tile_list))

        # (a) bare model, same tiles in memory.
        images = np.stack([decode_tile(x, y, z, body).image for (x, y, z), body in zip(tile_list, bodies)])
        segmenter.predict_masks(images[: args.batch_size])  # warm-up
        start = time.perf_counter()
        for i in range(0, len(images), args.batch_size):
            segmenter.predict_masks(images[i : i + args.batch_size])
        bare = len(images) / (time.perf_counter() - start)

        # (b) the worker, end to end.
        from looking_glass.pipeline.worker import Worker

        names = ResourceNames.for_prefix(f"b{uuid.uuid4().hex[:8]}")
        resources = create_embedded_resources(session, names)
        job = "be" * 12
        store = ResultsStore(session.client("dynamodb"), names.results_table)
        store.create_job(job, {"status": RUNNING, "tiles_total": len(tile_list)})
        sqs = session.client("sqs")
        meter = RequestMeter().watch(sqs)
        units = list(pack_runs(job, 18, tiles, 64))
        for i in range(0, len(units), 10):  # as the enumerator enqueues: ten to a batch
            sqs.send_message_batch(QueueUrl=resources.tile_queue_url, Entries=[
                {"Id": str(k), "MessageBody": u.to_json()} for k, u in enumerate(units[i : i + 10])])
        settings = WorkerSettings.from_env({
            "LG_TILE_URL_TEMPLATE": server.url_template, "LG_BATCH_SIZE": str(args.batch_size),
            "LG_DOWNLOAD_CONCURRENCY": str(args.concurrency), "LG_IDLE_EXIT_S": "0", "LG_POLL_WAIT_S": "0",
            "LG_WRITE_MASKS": "false" if args.no_masks else "true",
        })
        worker = Worker(session, resources, settings, segmenter)
        aws_calls = CallTimer(worker.sqs, worker.s3, worker.store.ddb)
        meter.watch(worker.sqs, worker.s3, worker.store.ddb)
        predict = segmenter.predict_masks
        predict_s = [0.0]

        def timed_predict(images):
            started = time.perf_counter()
            try:
                return predict(images)
            finally:
                predict_s[0] += time.perf_counter() - started

        segmenter.predict_masks = timed_predict
        trace = others_before = None
        if args.trace:
            from worker_trace import Trace, process_cpu_s, traced

            trace = Trace()
            traced(worker, trace)
            others = {"moto (process CPU)": moto.pid, "tile server (process CPU)": tiles_proc.pid,
                      "this process (all threads)": os.getpid()}
            others_before = {name: process_cpu_s(pid) for name, pid in others.items()}
            trace.origin = time.perf_counter()
        start = time.perf_counter()
        stats = worker.run()
        elapsed = time.perf_counter() - start
        if trace is not None:
            others_cpu = {name: process_cpu_s(pid) - others_before[name] for name, pid in others.items()}
        segmenter.predict_masks = predict
        assert stats.tiles_new == len(tile_list), stats
        worker_rate = len(tile_list) / elapsed
        ddb = session.client("dynamodb")

        def size_of(table, key):  # an updated item's size: the item as it is at the end
            item = ddb.get_item(TableName=table, Key=key).get("Item")
            return item_bytes(item) if item else None

        costs = request_costs(meter, len(tile_list), size_of)

        # (c) the 2018 style: one message per tile, serial downloads, predict on batches of 10.
        original = run_original(args, session, segmenter, server, tile_list, job, sqs) if not args.skip_original else None
    finally:
        moto.terminate()
        tiles_proc.terminate()
    print(f"(a) bare model (in memory, batch {args.batch_size}): {bare:8.1f} tiles/s")
    print(f"(b) worker end to end:                   {worker_rate:8.1f} tiles/s")
    print(f"    of its {elapsed:.1f} s the model ran {predict_s[0]:.1f} s; time in AWS calls, by operation")
    print("    (calls overlap: result objects upload in parallel, storing runs beside inference):")
    print(aws_calls.report())
    if trace is not None:
        print(trace.report(len(tile_list), others_cpu))
    print("    requests per tile: " + ", ".join(f"{k} {v:.4f}" for k, v in costs.items()))
    if original is not None:
        print(f"(c) 2018-style loop:                     {original:8.1f} tiles/s")
    print(f"worker / bare model     = {worker_rate / bare:.2f}  (goal >= 0.90)")
    if original is not None:
        print(f"worker / 2018-style     = {worker_rate / original:.1f}x (goal >= 5x)")
    if args.json:
        print(json.dumps({
            "tiles": len(tile_list), "tile_format": args.tile_format, "latency_ms": args.latency_ms,
            "batch_size": args.batch_size,
            "writes_masks": not args.no_masks, "model": segmenter.info.model_id,
            "services_pinned": args.pin_services, "runtime": segmenter.describe(),
            "load_average_1m": round(os.getloadavg()[0], 2), "cpus": os.cpu_count(),
            "worker_tiles_per_s": round(worker_rate, 2), "bare_tiles_per_s": round(bare, 2),
            "worker_over_bare": round(worker_rate / bare, 3),
            "original_tiles_per_s": None if original is None else round(original, 2),
            **{k: round(v, 5) for k, v in costs.items()},
        }))


def request_costs(meter: RequestMeter, tiles: int, size_of) -> dict[str, float]:
    """Per tile: S3 requests (all, PUT-class, GET-class), DynamoDB write and read units, billed
    SQS requests, and those requests' USD per million tiles at list prices."""
    s3_gets = meter.requests("s3", S3_GET_CLASS) / tiles
    s3_puts = meter.requests("s3", exclude=S3_GET_CLASS) / tiles
    wru = meter.dynamodb_wru(size_of) / tiles
    rru = meter.rru / tiles
    sqs = meter.sqs_billed / tiles
    return {
        "s3_requests_per_tile": s3_puts + s3_gets,
        "s3_put_requests_per_tile": s3_puts,
        "s3_get_requests_per_tile": s3_gets,
        "dynamodb_wru_per_tile": wru,
        "dynamodb_rru_per_tile": rru,
        "sqs_requests_per_tile": sqs,
        "aws_usd_per_million_tiles": request_usd_per_million_tiles(
            s3_puts, wru, sqs, s3_gets_per_tile=s3_gets, dynamodb_rru_per_tile=rru),
    }


def run_original(args, session, segmenter, server, tile_list, job, sqs) -> float:
    """(c): one SQS message per tile, serial downloads, predict on batches of 10; tiles/s."""
    names = ResourceNames.for_prefix(f"o{uuid.uuid4().hex[:8]}")
    resources = create_embedded_resources(session, names)
    store = ResultsStore(session.client("dynamodb"), names.results_table)
    store.create_job(job, {"status": RUNNING, "tiles_total": len(tile_list)})
    for x, y, z in tile_list:
        sqs.send_message(QueueUrl=resources.tile_queue_url, MessageBody=f"{x},{y},{z}")
    start = time.perf_counter()
    done = 0
    while done < len(tile_list):
        msgs = sqs.receive_message(QueueUrl=resources.tile_queue_url, MaxNumberOfMessages=10).get("Messages", [])
        batch = []
        for m in msgs:
            x, y, z = map(int, m["Body"].split(","))
            resp = requests.get(server.url_template.format(x=x, y=y, z=z), timeout=10)
            batch.append(((x, y, z), decode_tile(x, y, z, resp.content).image, m))
        if not batch:
            continue
        masks = segmenter.predict_masks(np.stack([b[1] for b in batch]))
        for ((x, y, z), _, m), mask in zip(batch, masks):
            area = area_decimal(building_area_m2(mask, x, y, z))
            store.record_tiles(job, [TileResult(x, y, z, quadkey(x, y, z), "done", area)], {})
            sqs.delete_message(QueueUrl=resources.tile_queue_url, ReceiptHandle=m["ReceiptHandle"])
        done += len(batch)
    return len(tile_list) / (time.perf_counter() - start)


if __name__ == "__main__":
    main()
