"""AWS list prices and the compute assumptions of the cost arithmetic, as named constants.

The one address of these numbers: ``looking-glass estimate`` (:mod:`looking_glass.tiling.estimate`)
and the cost table of docs/deploy.md price requests, storage and compute from here, and so should
anything else that prices AWS usage (the worker benchmark's ``aws_usd_per_million_tiles``).

**Prices** are list prices, us-east-1 (``REGION``), as published on the AWS pricing page named in
``PRICE_SOURCES`` in 2025 (``PRICES_AS_OF``). They were written down from those pages as the author
knew them in 2025 and were not re-fetched when this module was written (2026-11-30, on a machine
without internet access): check the page before relying on a figure. Free tiers are ignored (they
are per account and per month, not per tile).

**Assumptions** (``ASSUMED_*``) are not prices: a spot price, a GPU throughput nobody has measured
yet, start-up time and bytes per tile. Each says where it comes from. ``MEASURED_*`` figures come
from a command in the repository, named next to them.
"""

from __future__ import annotations

import math

__all__ = [
    "ASSUMED_G4DN_XLARGE_SPOT_USD_PER_HOUR",
    "ASSUMED_GPU_TILES_PER_SECOND",
    "ASSUMED_IMAGERY_BYTES_PER_TILE",
    "ASSUMED_PACK_BASE_BYTES",
    "ASSUMED_PACK_BYTES_PER_TILE",
    "ASSUMED_PACK_DELIVERY_BYTES",
    "ASSUMED_PACK_TILE_BYTES",
    "ASSUMED_RESULT_BYTES_PER_TILE",
    "ASSUMED_TILE_ITEM_BYTES",
    "ASSUMED_WORKER_START_HOURS",
    "DYNAMODB_RRU_USD_PER_MILLION",
    "DYNAMODB_STORAGE_USD_PER_GB_MONTH",
    "DYNAMODB_WRITE_UNIT_BYTES",
    "DYNAMODB_WRU_USD_PER_MILLION",
    "G4DN_XLARGE_ON_DEMAND_USD_PER_HOUR",
    "GB",
    "LAMBDA_USD_PER_GB_SECOND",
    "LAMBDA_USD_PER_MILLION_REQUESTS",
    "MEASURED_CPU_TILES_PER_SECOND",
    "NAT_GATEWAY_USD_PER_GB",
    "NAT_GATEWAY_USD_PER_HOUR",
    "PACK_TILES",
    "PACK_WRITES",
    "PRICES_AS_OF",
    "PRICE_SOURCES",
    "REGION",
    "S3_GET_USD_PER_1000",
    "S3_PUT_USD_PER_1000",
    "S3_STANDARD_USD_PER_GB_MONTH",
    "SQS_BILLED_CHUNK_BYTES",
    "SQS_USD_PER_MILLION_REQUESTS",
    "dynamodb_write_units",
    "nat_usd",
    "request_usd_breakdown",
    "request_usd_per_million_tiles",
    "sqs_billed_requests",
    "storage_usd_per_month",
]

REGION = "us-east-1"
PRICES_AS_OF = "2025"
GB = 1e9  # bytes in the GB of a price per GB (see nat_usd)

# ---- list prices, us-east-1, as published in 2025 (see PRICE_SOURCES) ----------------------------
# S3 Standard: PUT, COPY, POST and LIST requests; GET and SELECT requests; storage, first 50 TB/month.
S3_PUT_USD_PER_1000 = 0.005
S3_GET_USD_PER_1000 = 0.0004
S3_STANDARD_USD_PER_GB_MONTH = 0.023
# DynamoDB on-demand, Standard table class (the prices of 2024-11-01 on): a write request unit is
# one write of up to 1 KB, a transactional write costs two; a read request unit is one strongly
# consistent read of up to 4 KB (an eventually consistent one costs half).
DYNAMODB_WRU_USD_PER_MILLION = 0.625
DYNAMODB_RRU_USD_PER_MILLION = 0.125
DYNAMODB_STORAGE_USD_PER_GB_MONTH = 0.25
DYNAMODB_WRITE_UNIT_BYTES = 1024
# SQS standard queue: every API action is a request, and each 64 KB chunk of a payload is billed
# as one request (a 256 KB message is 4).
SQS_USD_PER_MILLION_REQUESTS = 0.40
SQS_BILLED_CHUNK_BYTES = 64 * 1024
# NAT gateway: per hour it exists, and per GB it processes (the workers' imagery downloads with
# worker_subnets=private; S3 and DynamoDB go through free gateway endpoints).
NAT_GATEWAY_USD_PER_HOUR = 0.045
NAT_GATEWAY_USD_PER_GB = 0.045
# Lambda, x86: per request and per GB-second of configured memory.
LAMBDA_USD_PER_MILLION_REQUESTS = 0.20
LAMBDA_USD_PER_GB_SECOND = 0.0000166667
# EC2 g4dn.xlarge (1 NVIDIA T4, 4 vCPUs, 16 GiB), Linux, on-demand: the Batch workers' instance.
G4DN_XLARGE_ON_DEMAND_USD_PER_HOUR = 0.526

PRICE_SOURCES = {
    "S3_PUT_USD_PER_1000": "https://aws.amazon.com/s3/pricing/",
    "S3_GET_USD_PER_1000": "https://aws.amazon.com/s3/pricing/",
    "S3_STANDARD_USD_PER_GB_MONTH": "https://aws.amazon.com/s3/pricing/",
    "DYNAMODB_WRU_USD_PER_MILLION": "https://aws.amazon.com/dynamodb/pricing/on-demand/",
    "DYNAMODB_RRU_USD_PER_MILLION": "https://aws.amazon.com/dynamodb/pricing/on-demand/",
    "DYNAMODB_STORAGE_USD_PER_GB_MONTH": "https://aws.amazon.com/dynamodb/pricing/on-demand/",
    "SQS_USD_PER_MILLION_REQUESTS": "https://aws.amazon.com/sqs/pricing/",
    "NAT_GATEWAY_USD_PER_HOUR": "https://aws.amazon.com/vpc/pricing/",
    "NAT_GATEWAY_USD_PER_GB": "https://aws.amazon.com/vpc/pricing/",
    "LAMBDA_USD_PER_MILLION_REQUESTS": "https://aws.amazon.com/lambda/pricing/",
    "LAMBDA_USD_PER_GB_SECOND": "https://aws.amazon.com/lambda/pricing/",
    "G4DN_XLARGE_ON_DEMAND_USD_PER_HOUR": "https://aws.amazon.com/ec2/pricing/on-demand/",
}

# ---- assumptions and measurements (not prices) ---------------------------------------------------
# Spot g4dn.xlarge: about 60% below on-demand. Spot prices move hourly; this is no list price.
ASSUMED_G4DN_XLARGE_SPOT_USD_PER_HOUR = 0.21
# One g4dn.xlarge worker (T4): assumed, not measured (no GPU run of the worker yet).
ASSUMED_GPU_TILES_PER_SECOND = 200.0
# The worker end to end on the 2-core development machine, shipped model, 50 ms tile latency
# (benchmarks/worker_benchmark.py, docs/benchmarks.md#worker): the pessimistic case.
MEASURED_CPU_TILES_PER_SECOND = 52.6
# Per worker: instance launch, ~8 GB image pull, model load and the idle time out at the end.
ASSUMED_WORKER_START_HOURS = 9 / 60
# One 256x256 imagery tile (JPEG/PNG) downloaded through the NAT gateway.
ASSUMED_IMAGERY_BYTES_PER_TILE = 25_000
# A tile's share of the stored results: a 256x256 mask, bit-packed and uncompressed (8 KiB), an
# upper bound for a mask alone; compression makes it smaller, extra rasters larger.
ASSUMED_RESULT_BYTES_PER_TILE = 256 * 256 // 8
# A small item of the results table (a unit's ledger, the job record; before the tile packs, a
# tile's own item: keys, status, area, pixels, provenance) with DynamoDB's 100-byte item overhead:
# under 1 KB, so one write request unit per plain write.
ASSUMED_TILE_ITEM_BYTES = 500
# A tile pack (looking_glass.pipeline.packs, docs/results.md#tile-packs), sized as DynamoDB sizes
# it for a representative done tile (tests/unit/pipeline/test_packs.py checks these against the
# layout): a tile's attribute 59 bytes; a delivery (one per unit writing the pack) 149; the keys
# and the provenance, once per pack, 240. A pack is 64 tiles, written by 8 row units.
ASSUMED_PACK_TILE_BYTES = 59
ASSUMED_PACK_DELIVERY_BYTES = 149
ASSUMED_PACK_BASE_BYTES = 240
PACK_TILES, PACK_WRITES = 64, 8
# A full pack with DynamoDB's 100-byte item overhead, shared by its 64 tiles (storage).
ASSUMED_PACK_BYTES_PER_TILE = (ASSUMED_PACK_BASE_BYTES + PACK_WRITES * ASSUMED_PACK_DELIVERY_BYTES
                               + PACK_TILES * ASSUMED_PACK_TILE_BYTES + 100) / PACK_TILES


def _count(name: str, value: float) -> float:
    """``value`` as a float if it is a finite number >= 0, else ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def request_usd_breakdown(
    s3_requests_per_tile: float,
    dynamodb_wru_per_tile: float,
    sqs_requests_per_tile: float,
    *,
    s3_gets_per_tile: float = 0.0,
    dynamodb_rru_per_tile: float = 0.0,
) -> dict[str, float]:
    """USD per million tiles of each service's requests: ``{"s3": ..., "dynamodb": ...,
    "sqs": ...}``.

    ``s3_requests_per_tile`` are priced as PUTs (the worker's S3 requests are writes; a GET counted
    there is overpriced, never underpriced), ``s3_gets_per_tile`` as GETs. ``dynamodb_wru_per_tile``
    are write request units as DynamoDB bills them (see :func:`dynamodb_write_units`),
    ``dynamodb_rru_per_tile`` read request units, ``sqs_requests_per_tile`` billed SQS requests (see
    :func:`sqs_billed_requests`). ValueError for a count that is negative, not finite or not a
    number.
    """
    s3_puts = _count("s3_requests_per_tile", s3_requests_per_tile)
    s3_gets = _count("s3_gets_per_tile", s3_gets_per_tile)
    wru = _count("dynamodb_wru_per_tile", dynamodb_wru_per_tile)
    rru = _count("dynamodb_rru_per_tile", dynamodb_rru_per_tile)
    sqs = _count("sqs_requests_per_tile", sqs_requests_per_tile)
    # Per million tiles: a price per 1,000 requests times 1,000; a price per million times 1.
    return {
        "s3": s3_puts * S3_PUT_USD_PER_1000 * 1000 + s3_gets * S3_GET_USD_PER_1000 * 1000,
        "dynamodb": wru * DYNAMODB_WRU_USD_PER_MILLION + rru * DYNAMODB_RRU_USD_PER_MILLION,
        "sqs": sqs * SQS_USD_PER_MILLION_REQUESTS,
    }


def request_usd_per_million_tiles(
    s3_requests_per_tile: float,
    dynamodb_wru_per_tile: float,
    sqs_requests_per_tile: float,
    *,
    s3_gets_per_tile: float = 0.0,
    dynamodb_rru_per_tile: float = 0.0,
) -> float:
    """USD per million tiles of S3, DynamoDB and SQS requests at the list prices above: the sum of
    :func:`request_usd_breakdown` (same arguments, same ValueError)."""
    return sum(
        request_usd_breakdown(
            s3_requests_per_tile,
            dynamodb_wru_per_tile,
            sqs_requests_per_tile,
            s3_gets_per_tile=s3_gets_per_tile,
            dynamodb_rru_per_tile=dynamodb_rru_per_tile,
        ).values()
    )


def dynamodb_write_units(item_bytes: int, transactional: bool = False) -> int:
    """Write request units DynamoDB bills for writing one item of ``item_bytes`` (the UTF-8 bytes
    of its attribute names and values): one per started KB, twice that inside a transaction.
    ValueError for a size below 1 byte."""
    if isinstance(item_bytes, bool) or not isinstance(item_bytes, int) or item_bytes < 1:
        raise ValueError(f"item_bytes must be an integer >= 1, got {item_bytes!r}")
    units = -(-item_bytes // DYNAMODB_WRITE_UNIT_BYTES)
    return 2 * units if transactional else units


def sqs_billed_requests(payload_bytes: int) -> int:
    """Requests SQS bills for one API call carrying ``payload_bytes`` (all its messages together):
    one per started 64 KB chunk, at least one. ValueError for a negative size."""
    if isinstance(payload_bytes, bool) or not isinstance(payload_bytes, int) or payload_bytes < 0:
        raise ValueError(f"payload_bytes must be an integer >= 0, got {payload_bytes!r}")
    return max(1, -(-payload_bytes // SQS_BILLED_CHUNK_BYTES))


def nat_usd(nbytes: float) -> float:
    """USD for ``nbytes`` processed by a NAT gateway; ValueError if negative or not finite.

    A GB is taken as 1e9 bytes (:data:`GB`): if AWS counts 2**30, this overstates by 7%."""
    return _count("nbytes", nbytes) / GB * NAT_GATEWAY_USD_PER_GB


def storage_usd_per_month(s3_bytes: float, dynamodb_bytes: float) -> float:
    """USD per month of keeping ``s3_bytes`` in S3 Standard and ``dynamodb_bytes`` in a DynamoDB
    Standard table (GB as in :func:`nat_usd`); ValueError if either is negative or not finite."""
    s3 = _count("s3_bytes", s3_bytes) / GB
    ddb = _count("dynamodb_bytes", dynamodb_bytes) / GB
    return s3 * S3_STANDARD_USD_PER_GB_MONTH + ddb * DYNAMODB_STORAGE_USD_PER_GB_MONTH
