"""Job fan-out at scale: can one Lambda invocation turn a country-scale AOI into SQS work?

In one run:
1. cover + packing of a country (Mali, 58.5 million zoom-18 tiles) into work units (everything but the network), with
   time and peak traced memory;
2. the real enumerator's enqueue against the embedded SQS (moto server) for a city (New York
   City, 61,785 tiles):
   SQS requests per million tiles (goal: at most 2,000). moto's SQS slows down as a queue grows
   (each send costs more the more messages wait: ~80 ms per request at 500 messages, ~440 ms at
   2,500), so its request rate says nothing about real SQS; the network time for the country is
   therefore printed for an assumed real-SQS latency (--sqs-latency-ms) with the enqueue threads.

    .venv/bin/python benchmarks/fanout_benchmark.py
"""

from __future__ import annotations

import gc
import time
import tracemalloc
from pathlib import Path

import boto3
from cover_benchmark import load_aoi  # noqa: E402

from looking_glass.local.embedded import EmbeddedStack  # noqa: E402
from looking_glass.pipeline.enumerator import Enumerator  # noqa: E402
from looking_glass.pipeline.workunits import pack_runs  # noqa: E402
from looking_glass.runtime.defaults import DEFAULT_TILES_PER_MESSAGE  # noqa: E402
from looking_glass.runtime.settings import EnumeratorSettings  # noqa: E402
from looking_glass.tiling.cover import count_tiles, tile_runs  # noqa: E402

JOB = "0" * 24


def pack_all(runs) -> tuple[int, int]:
    messages = bytes_ = 0
    for unit in pack_runs(JOB, 18, runs, DEFAULT_TILES_PER_MESSAGE):
        messages += 1
        bytes_ += len(unit.to_json())
    return messages, bytes_


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--sqs-latency-ms", type=float, default=30.0, help="assumed SendMessageBatch latency")
    args = parser.parse_args()
    country = load_aoi("mali")
    gc.collect()
    start = time.perf_counter()
    runs = tile_runs(country, 18)
    t_cover = time.perf_counter() - start
    messages, size = pack_all(runs)
    t_pack = time.perf_counter() - start - t_cover
    # Memory: traced separately (tracing slows the packing loop down many times over). Packing
    # streams one unit at a time, so the cover's runs are what the enumerator holds.
    gc.collect()
    tracemalloc.start()
    tile_runs(country, 18)
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    tiles = count_tiles(runs)
    print(f"Mali: {tiles:,} tiles in {len(runs):,} runs", flush=True)
    print(f"  cover {t_cover:.2f} s, packing {messages:,} work units ({size / 2**20:.0f} MiB of JSON) {t_pack:.1f} s, peak traced memory of the cover {peak:.0f} MiB", flush=True)

    region = load_aoi("new_york_city")
    region_runs = tile_runs(region, 18)
    region_tiles = count_tiles(region_runs)
    with EmbeddedStack(Path("/tmp/lg-fanout-bench")) as stack:
        settings = EnumeratorSettings.from_env({"LG_WORKER_LAUNCHER": "local"})
        enumerator = Enumerator(boto3.session.Session(), stack.resources, settings, launcher=None)
        requests = []
        enumerator.sqs.meta.events.register("before-call.sqs.SendMessageBatch", lambda **kw: requests.append(1))
        start = time.perf_counter()
        sent = enumerator.enqueue(JOB, region_runs)
        t_send = time.perf_counter() - start
    per_million = len(requests) / region_tiles * 1e6
    print(f"New York City: {region_tiles:,} tiles -> {sent:,} messages in {len(requests):,} SendMessageBatch requests ({t_send:.1f} s on moto)")
    print(f"  {per_million:,.0f} SQS requests per million tiles (goal <= 2,000)")
    country_requests = -(-messages // 10)
    rate = settings.enqueue_threads / (args.sqs_latency_ms / 1000)
    print(
        f"Mali: {country_requests:,} requests; at an assumed {args.sqs_latency_ms:g} ms per request "
        f"with {settings.enqueue_threads} threads ({rate:,.0f}/s): {country_requests / rate / 60:.1f} min of sending "
        f"+ {t_cover + t_pack:.1f} s of cover and packing (Lambda limit: 15 min)"
    )


if __name__ == "__main__":
    main()
