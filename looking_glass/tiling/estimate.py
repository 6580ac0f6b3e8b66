"""What an AOI will cost before it is submitted: tiles, area, SQS traffic, workers, and money for
compute, requests, NAT traffic and storage, each shown on its own.

Prices and assumptions come from :mod:`looking_glass.pricing` (AWS list prices, us-east-1). The
defaults: one g4dn.xlarge worker per ``DEFAULT_TILES_PER_WORKER`` tiles (as the enumerator sizes
them), each **assumed** to do 200 tiles/s and to spend 9 minutes starting and idling out, at the
on-demand list price (USD 0.526/h); 25 KB of imagery per tile through the NAT gateway. Pass your own.

The requests per tile are those of the results store (one result object and one conditional
ledger transaction per work unit, tiles written into their packs by ``UpdateItem``, SQS receive
and delete per unit): counted from the design here (:func:`design_requests_per_tile`), not measured; measured
counts (``benchmarks/worker_benchmark.py --json``) can be priced instead (``requests_per_tile``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from looking_glass import pricing
from looking_glass.grid import EARTH_RADIUS_M, lat_of_row_edge
from looking_glass.runtime.defaults import DEFAULT_TILES_PER_MESSAGE, DEFAULT_TILES_PER_WORKER, workers_for

SQS_MESSAGES_PER_REQUEST = 10  # SendMessageBatch takes at most 10 messages

# ---- the requests of one work unit, counted from the design (not measured) ----------------------
# One S3 PUT: the unit's masks in one result object.
RESULT_OBJECT_PUTS_PER_UNIT = 1
# Each tile's result, written into its pack (looking_glass.pipeline.packs) by UpdateItem, which is
# billed by the pack's size after the write (the larger): a unit is a row run of 64 tiles, so it
# writes one row of 8 tiles (and its delivery) into each of 8 packs, and each pack is written 8
# times, a row larger each time: 1 + 2 + 3 + 3 + 4 + 4 + 5 + 6 = 28 units for its 64 tiles.
PACK_ROW_BYTES = pricing.PACK_TILES // pricing.PACK_WRITES * pricing.ASSUMED_PACK_TILE_BYTES + pricing.ASSUMED_PACK_DELIVERY_BYTES
PACK_WRU_PER_TILE = sum(
    pricing.dynamodb_write_units(pricing.ASSUMED_PACK_BASE_BYTES + k * PACK_ROW_BYTES) for k in range(1, pricing.PACK_WRITES + 1)
) / pricing.PACK_TILES
# One TransactWriteItems per unit: the unit's ledger item (conditional put) and the job counters'
# update, two small items at twice the plain price each.
UNIT_LEDGER_ITEMS = 2
UNIT_LEDGER_WRU = UNIT_LEDGER_ITEMS * pricing.dynamodb_write_units(pricing.ASSUMED_TILE_ITEM_BYTES, transactional=True)
# SQS per unit: one ReceiveMessage, one DeleteMessage, and its tenth of the enumerator's
# SendMessageBatch (a batch of 10 small units is far under one 64 KB billed chunk).
SQS_REQUESTS_PER_UNIT = 2 + 1 / SQS_MESSAGES_PER_REQUEST


@dataclass(frozen=True)
class RequestsPerTile:
    """Billed requests per tile: S3 PUTs, DynamoDB write request units, SQS requests."""

    s3_requests: float
    dynamodb_wru: float
    sqs_requests: float

    def usd_per_million_tiles(self) -> dict[str, float]:
        """USD per million tiles by service (``s3``, ``dynamodb``, ``sqs``) at list prices."""
        return pricing.request_usd_breakdown(self.s3_requests, self.dynamodb_wru, self.sqs_requests)


def design_requests_per_tile(tiles_per_message: int = DEFAULT_TILES_PER_MESSAGE) -> RequestsPerTile:
    """The requests per tile of the results store with work units of ``tiles_per_message`` tiles
    (the per-unit figures above shared among the unit's tiles); ValueError below 1."""
    if isinstance(tiles_per_message, bool) or not isinstance(tiles_per_message, int) or tiles_per_message < 1:
        raise ValueError(f"tiles_per_message must be an integer >= 1, got {tiles_per_message!r}")
    return RequestsPerTile(
        s3_requests=RESULT_OBJECT_PUTS_PER_UNIT / tiles_per_message,
        dynamodb_wru=PACK_WRU_PER_TILE + UNIT_LEDGER_WRU / tiles_per_message,
        sqs_requests=SQS_REQUESTS_PER_UNIT / tiles_per_message,
    )


# At the default unit of 64 tiles: 0.015625 S3 PUTs, 0.5 write units, 0.0328 SQS requests.
DESIGN_REQUESTS_PER_TILE = design_requests_per_tile()


@dataclass(frozen=True)
class Estimate:
    """What an AOI will cost. Counts: ``tiles``, their ground area (km2), SQS ``sqs_messages``
    (work units) and send requests, ``workers``. Time: ``worker_hours`` (instance-hours: tiles at
    ``tiles_per_second`` plus ``worker_start_hours`` per worker). USD, each part on its own:
    ``compute_usd`` (instance-hours at ``price_per_hour``), ``requests_usd`` (= ``s3_usd`` +
    ``dynamodb_usd`` + ``sqs_usd`` at list prices for ``requests_per_tile``), ``nat_usd``
    (``nat_bytes_per_tile`` per tile), ``total_usd`` (those three) and ``storage_usd_per_month``
    (the results kept in S3 and DynamoDB, per month, not in the total)."""

    tiles: int
    tiles_area_km2: float
    sqs_messages: int
    sqs_send_requests: int
    workers: int
    worker_hours: float
    compute_usd: float
    s3_usd: float
    dynamodb_usd: float
    sqs_usd: float
    requests_usd: float
    nat_usd: float
    total_usd: float
    storage_usd_per_month: float
    tiles_per_second: float
    price_per_hour: float
    worker_start_hours: float
    nat_bytes_per_tile: float
    requests_per_tile: dict

    def to_dict(self) -> dict:
        """The fields as a JSON-able dict (``looking-glass estimate --json``)."""
        return asdict(self)


def tiles_area_km2(runs: np.ndarray, zoom: int) -> float:
    """Ground area of the covered tiles in km2: each tile of row y is the exact spherical area
    of its latitude band, 2 pi R^2 / 2^zoom * (sin(north) - sin(south)) (R: the web-mercator
    sphere's radius), right at every zoom, including 0-2 where a tile spans tens of degrees."""
    if len(runs) == 0:
        return 0.0
    rows = runs[:, 0].astype(np.float64)
    north, south = np.radians(lat_of_row_edge(rows, zoom)), np.radians(lat_of_row_edge(rows + 1, zoom))
    per_tile = 2 * math.pi * EARTH_RADIUS_M**2 / 2**zoom * (np.sin(north) - np.sin(south))
    return float(((runs[:, 2] - runs[:, 1]) * per_tile).sum() / 1e6)


def estimate(
    runs: np.ndarray,
    zoom: int,
    tiles_per_message: int = DEFAULT_TILES_PER_MESSAGE,
    tiles_per_second: float = pricing.ASSUMED_GPU_TILES_PER_SECOND,
    price_per_hour: float = pricing.G4DN_XLARGE_ON_DEMAND_USD_PER_HOUR,
    nat_bytes_per_tile: float = pricing.ASSUMED_IMAGERY_BYTES_PER_TILE,
    requests_per_tile: RequestsPerTile | None = None,
    tiles_per_worker: int = DEFAULT_TILES_PER_WORKER,
) -> Estimate:
    """The cost of the tile cover ``runs`` ((n, 3) int64 rows of y, x_start, x_stop) at ``zoom``.

    ``requests_per_tile`` defaults to :func:`design_requests_per_tile` of ``tiles_per_message``
    (give measured counts to price those instead); workers are one per ``tiles_per_worker`` tiles,
    at most ``DEFAULT_MAX_WORKERS``, as the enumerator launches them. ValueError for a non-positive
    throughput, message size or tiles per worker, or a negative price or byte count.
    """
    if (tiles_per_second <= 0 or price_per_hour < 0 or tiles_per_message < 1 or nat_bytes_per_tile < 0
            or tiles_per_worker < 1):
        raise ValueError(
            "tiles_per_second must be > 0, price_per_hour >= 0, tiles_per_message >= 1, nat_bytes_per_tile >= 0, "
            "tiles_per_worker >= 1"
        )
    requests = requests_per_tile or design_requests_per_tile(tiles_per_message)
    # Messages as the enumerator packs them: runs are split, never merged across a message.
    tiles = int((runs[:, 2] - runs[:, 1]).sum()) if len(runs) else 0
    messages = math.ceil(tiles / tiles_per_message)
    workers = workers_for(tiles, tiles_per_worker)
    hours = tiles / tiles_per_second / 3600 + workers * pricing.ASSUMED_WORKER_START_HOURS
    per_million = {k: v * tiles / 1e6 for k, v in requests.usd_per_million_tiles().items()}
    compute, requests_usd = hours * price_per_hour, sum(per_million.values())
    nat = pricing.nat_usd(tiles * nat_bytes_per_tile)
    storage = pricing.storage_usd_per_month(
        tiles * pricing.ASSUMED_RESULT_BYTES_PER_TILE, tiles * pricing.ASSUMED_PACK_BYTES_PER_TILE
    )
    return Estimate(
        tiles=tiles,
        tiles_area_km2=round(tiles_area_km2(runs, zoom), 3),
        sqs_messages=messages,
        sqs_send_requests=math.ceil(messages / SQS_MESSAGES_PER_REQUEST),
        workers=workers,
        worker_hours=round(hours, 3),
        compute_usd=round(compute, 4),
        s3_usd=round(per_million["s3"], 4),
        dynamodb_usd=round(per_million["dynamodb"], 4),
        sqs_usd=round(per_million["sqs"], 4),
        requests_usd=round(requests_usd, 4),
        nat_usd=round(nat, 4),
        total_usd=round(compute + requests_usd + nat, 4),
        storage_usd_per_month=round(storage, 4),
        tiles_per_second=tiles_per_second,
        price_per_hour=price_per_hour,
        worker_start_hours=pricing.ASSUMED_WORKER_START_HOURS,
        nat_bytes_per_tile=nat_bytes_per_tile,
        requests_per_tile=asdict(requests),
    )
