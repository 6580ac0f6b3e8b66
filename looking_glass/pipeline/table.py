"""The results table's vocabulary: tile results as items, typed attribute values, areas, times.

Shared by the job records (``store``) and the exactly-once tile ledger (``ledger``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from looking_glass.imagery.status import TILE_STATUSES
from looking_glass.runtime.resources import TABLE_PARTITION_KEY, TABLE_SORT_KEY, TILE_SORT_PREFIX

COUNTER_OF_STATUS = {s: f"tiles_{s}" for s in TILE_STATUSES}

AREA_QUANTUM = Decimal("0.001")  # areas are stored to the square millimetre, summed exactly

_ser = TypeSerializer()
_de = TypeDeserializer()


class UnknownJob(RuntimeError):
    """A tile result names a job that has no job record (never created, or deleted)."""


def utc_now() -> str:
    """The current UTC time as ISO 8601 to the second (the table's timestamps)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def fraction_decimal(value: float | None) -> Decimal | None:
    """A fraction (0-1) as the Decimal the table stores, to 4 decimals; None stays None."""
    return None if value is None else Decimal(repr(float(value))).quantize(Decimal("0.0001"))


def area_decimal(value: float) -> Decimal:
    """An area in m2 as the Decimal the table stores: the float's shortest repr, quantized to
    ``AREA_QUANTUM`` (1e-3 m2), so sums of areas are exact."""
    return Decimal(repr(float(value))).quantize(AREA_QUANTUM)


@dataclass(frozen=True)
class TileResult:
    """The final result of one tile: its status (``imagery.status``), building area (m2, as the
    stored Decimal), building pixels, building count (``outlines.vectorize.building_count``; None
    for a tile without a prediction), and a reason or mask key where there is one."""

    x: int
    y: int
    z: int
    quadkey: str
    status: str
    building_area_m2: Decimal = Decimal(0)
    building_pixels: int = 0
    reason: str | None = None
    mask_key: str | None = None  # the S3 key of the unit's result object holding the tile's mask
    unit: str | None = None  # the work unit (WorkUnit.unit_id) whose ledger counts it; None: its own
    # Share of the tile holding imagery (0-1, 4 decimals) and the imagery's capture date(s)
    # (YYYY-MM-DD, a mosaic's newest first, comma-joined), where known (docs/imagery.md).
    valid_fraction: Decimal | None = None
    capture_date: str | None = None
    building_count: int | None = None

    @property
    def ledger(self) -> str:
        """The ledger that counts this tile (``looking_glass.pipeline.ledger``): its unit's, or
        for a result recorded outside a unit one of its own."""
        return self.unit or f"tile-{self.quadkey}"

    def item(self, job_id: str, provenance: dict) -> dict:
        """The tile's table item for ``job_id`` with the model/imagery ``provenance`` fields."""
        item = {
            TABLE_PARTITION_KEY: job_id,
            TABLE_SORT_KEY: TILE_SORT_PREFIX + self.quadkey,
            "quadkey": self.quadkey,
            "z": self.z,
            "x": self.x,
            "y": self.y,
            "status": self.status,
            "building_area_m2": self.building_area_m2,
            "building_pixels": self.building_pixels,
            **provenance,
        }
        if self.reason:
            item["reason"] = self.reason[:1000]
        if self.mask_key:
            item["mask_key"] = self.mask_key
        item["unit"] = self.ledger
        if self.valid_fraction is not None:
            item["valid_fraction"] = self.valid_fraction
        if self.capture_date:
            item["capture_date"] = self.capture_date[:200]
        if self.building_count is not None:
            item["building_count"] = self.building_count
        return item


def marshal(item: dict) -> dict:
    """A Python item as DynamoDB's typed attribute values (``{"S": ...}``, ``{"N": ...}``);
    attributes that are None are left out."""
    return {k: _ser.serialize(v) for k, v in item.items() if v is not None}


def unmarshal(item: dict) -> dict:
    """DynamoDB's typed attribute values back to Python (numbers as ``Decimal``)."""
    return {k: _de.deserialize(v) for k, v in item.items()}
