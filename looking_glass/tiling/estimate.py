"""What an AOI will cost before it is submitted: tiles, area, SQS traffic, worker time and money.

Throughput and price are inputs, not facts: the defaults are the CPU throughput measured on the
development machine (DeepLab V3+ MobileNetV2, 256x256, TensorFlow 2.21, 2 cores: ~40 tiles/s)
and the on-demand list price of one g4dn.xlarge in us-east-1 (USD 0.526/h). Pass your own.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from looking_glass.grid import EARTH_RADIUS_M, lat_of_row_edge
from looking_glass.runtime.defaults import DEFAULT_TILES_PER_MESSAGE

DEFAULT_TILES_PER_SECOND = 40.0
DEFAULT_PRICE_PER_HOUR = 0.526
SQS_MESSAGES_PER_REQUEST = 10


@dataclass(frozen=True)
class Estimate:
    """What an AOI will cost: tiles, their ground area (km2), SQS messages and send requests,
    worker hours and USD at the given throughput (tiles/s) and price (USD per instance-hour)."""

    tiles: int
    tiles_area_km2: float
    sqs_messages: int
    sqs_send_requests: int
    worker_hours: float
    cost_usd: float
    tiles_per_second: float
    price_per_hour: float

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
    tiles_per_second: float = DEFAULT_TILES_PER_SECOND,
    price_per_hour: float = DEFAULT_PRICE_PER_HOUR,
) -> Estimate:
    """The cost of the tile cover ``runs`` ((n, 3) int64 rows of y, x_start, x_stop) at
    ``zoom``; ValueError for a non-positive throughput or message size or a negative price."""
    if tiles_per_second <= 0 or price_per_hour < 0 or tiles_per_message < 1:
        raise ValueError("tiles_per_second must be > 0, price_per_hour >= 0, tiles_per_message >= 1")
    # Messages as the enumerator packs them: runs are split, never merged across a message.
    tiles = int((runs[:, 2] - runs[:, 1]).sum()) if len(runs) else 0
    messages = math.ceil(tiles / tiles_per_message)
    hours = tiles / tiles_per_second / 3600
    return Estimate(
        tiles=tiles,
        tiles_area_km2=round(tiles_area_km2(runs, zoom), 3),
        sqs_messages=messages,
        sqs_send_requests=math.ceil(messages / SQS_MESSAGES_PER_REQUEST),
        worker_hours=round(hours, 3),
        cost_usd=round(hours * price_per_hour, 2),
        tiles_per_second=tiles_per_second,
        price_per_hour=price_per_hour,
    )
