"""Defaults and limits of the tile fan-out: how work is cut into SQS messages and Batch workers.

The one address of these numbers: the enumerator's settings (``LG_TILES_PER_MESSAGE``,
``LG_MAX_TILES_PER_JOB``, ``LG_MAX_WORKERS``, ``LG_TILES_PER_WORKER``), the CDK context defaults
(``stacks/config.py``), the work-unit format (``looking_glass.pipeline.workunits``), the cost
estimate (``looking_glass.tiling.estimate``), job retries (``looking_glass.pipeline.jobs``) and
the command line's defaults all read them from here.
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_MAX_TILES_PER_JOB",
    "DEFAULT_MAX_WORKERS",
    "DEFAULT_TILES_PER_MESSAGE",
    "DEFAULT_TILES_PER_WORKER",
    "MAX_TILES_PER_MESSAGE",
    "workers_for",
]

# Tiles in one SQS work unit: about one inference batch, so a million tiles are ~16,000
# messages (a few hundred SQS requests in batches of 10), not a million.
DEFAULT_TILES_PER_MESSAGE = 64
# A work unit lists runs of tiles; this bounds one message's tiles (and its size under SQS's 256 KiB).
MAX_TILES_PER_MESSAGE = 10_000
# An AOI with more tiles than this fails its job instead of being enqueued (LG_MAX_TILES_PER_JOB).
DEFAULT_MAX_TILES_PER_JOB = 5_000_000
# One worker per this many tiles, up to the worker cap (LG_TILES_PER_WORKER, LG_MAX_WORKERS).
# Why 50,000: a worker is billed for its start-up (instance launch, image pull, model load, idle
# time-out: about 9 minutes, pricing.ASSUMED_WORKER_START_HOURS) whatever it then infers. At the
# assumed 200 tiles/s of a g4dn.xlarge, 20,000 tiles were 1.7 minutes of work per 9 of start-up
# (85% of every worker-hour spent starting); 50,000 are about 4 minutes, which halves the compute
# of a 1,000 km2 job for about 2.5 more minutes of wall time (docs/deploy.md#cost-per-1000-km2).
# Large jobs are still spread over up to max_workers workers.
DEFAULT_TILES_PER_WORKER = 50_000
DEFAULT_MAX_WORKERS = 50


def workers_for(tiles: int, tiles_per_worker: int = DEFAULT_TILES_PER_WORKER, max_workers: int = DEFAULT_MAX_WORKERS) -> int:
    """Workers for ``tiles`` tiles, as the enumerator launches them: one per ``tiles_per_worker``
    tiles, at least 1 and at most ``max_workers``."""
    return max(1, min(max_workers, -(-tiles // tiles_per_worker)))
