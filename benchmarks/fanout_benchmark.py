"""Job fan-out at scale: can one Lambda invocation turn a country-scale AOI into SQS work?

In one run:
1. cover + packing of a ~50-million-tile AOI into work units (everything but the network), with
   time and peak traced memory;
2. the real enumerator's enqueue against the embedded SQS (moto server) for a ~1-million-tile
   AOI: SQS requests per million tiles (goal: at most 2,000) and requests/s, from which the
   network time for the 50-million-tile job is extrapolated at that rate.

    .venv/bin/python benchmarks/fanout_benchmark.py
"""

from __future__ import annotations

import gc
import sys
import time
import tracemalloc
from pathlib import Path

import boto3

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cover_benchmark import wobbly  # noqa: E402

from looking_glass.cover import count_tiles, tile_runs  # noqa: E402
from looking_glass.embedded import EmbeddedStack  # noqa: E402
from looking_glass.enumerator import Enumerator  # noqa: E402
from looking_glass.settings import EnumeratorSettings  # noqa: E402
from looking_glass.workunits import DEFAULT_TILES_PER_MESSAGE, pack_runs  # noqa: E402

JOB = "0" * 24


def pack_all(runs) -> tuple[int, int]:
    messages = bytes_ = 0
    for unit in pack_runs(JOB, 18, runs, DEFAULT_TILES_PER_MESSAGE):
        messages += 1
        bytes_ += len(unit.to_json())
    return messages, bytes_


def main() -> None:
    country = wobbly(20.0, 5.0, 4.3, 20000, 3)
    gc.collect()
    tracemalloc.start()
    start = time.perf_counter()
    runs = tile_runs(country, 18)
    t_cover = time.perf_counter() - start
    messages, size = pack_all(runs)
    t_pack = time.perf_counter() - start - t_cover
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    tiles = count_tiles(runs)
    print(f"country AOI: {tiles:,} tiles in {len(runs):,} runs")
    print(f"  cover {t_cover:.2f} s, packing {messages:,} work units ({size / 2**20:.0f} MiB of JSON) {t_pack:.1f} s, peak traced memory {peak:.0f} MiB")

    region = wobbly(30.0, -2.0, 0.75, 8000, 2)
    region_runs = tile_runs(region, 18)
    region_tiles = count_tiles(region_runs)
    with EmbeddedStack(Path("/tmp/lg-fanout-bench")) as stack:
        settings = EnumeratorSettings.from_env({"LG_WORKER_LAUNCHER": "local"})
        enumerator = Enumerator(boto3.session.Session(), stack.resources, settings, launcher=None)
        requests = []
        enumerator.sqs.meta.events.register("before-call.sqs.SendMessageBatch", lambda **kw: requests.append(1))
        start = time.perf_counter()
        sent = enumerator._enqueue(JOB, region_runs)
        t_send = time.perf_counter() - start
    per_million = len(requests) / region_tiles * 1e6
    rate = len(requests) / t_send
    print(f"region AOI: {region_tiles:,} tiles -> {sent:,} messages in {len(requests):,} SendMessageBatch requests, {t_send:.1f} s")
    print(f"  {per_million:,.0f} SQS requests per million tiles (goal <= 2,000); {rate:,.0f} requests/s with {settings.enqueue_threads} threads")
    country_requests = -(-messages // 10)
    print(
        f"country AOI extrapolated: {country_requests:,} requests at {rate:,.0f}/s = "
        f"{country_requests / rate / 60:.1f} min of sending + {t_cover + t_pack:.0f} s of cover and packing "
        f"(Lambda limit: 15 min)"
    )


if __name__ == "__main__":
    main()
