"""The results table: job records and per-tile result items (DynamoDB).

Key schema (``resources``): partition ``job_id``; sort ``job`` for the job record and
``tile#<quadkey>`` for each tile. Tile items are written with a condition so that each tile's
counters move the job's totals exactly once, whatever SQS redelivers.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal

import numpy as np
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from looking_glass.imagery.status import TILE_STATUSES
from looking_glass.runtime.resources import (
    JOB_SORT_KEY,
    JOBS_INDEX_NAME,
    JOBS_INDEX_PARTITION_KEY,
    JOBS_INDEX_PARTITION_VALUE,
    TABLE_PARTITION_KEY,
    TABLE_SORT_KEY,
    TILE_SORT_PREFIX,
)

# Job statuses.
ENQUEUEING = "ENQUEUEING"  # record written, work being enqueued
RUNNING = "RUNNING"  # all work enqueued, workers started
COMPLETE = "COMPLETE"  # every tile has a final status
FAILED = "FAILED"  # the AOI or job could not be processed; see `reason`

COUNTER_OF_STATUS = {s: f"tiles_{s}" for s in TILE_STATUSES}

# DynamoDB allows 100 actions per transaction; one is the job counter update.
TILES_PER_TRANSACTION = 99
AREA_QUANTUM = Decimal("0.001")  # areas are stored to the square millimetre, summed exactly

_ser = TypeSerializer()
_de = TypeDeserializer()


class UnknownJob(RuntimeError):
    """A tile result names a job that has no job record (never created, or deleted)."""


def utc_now() -> str:
    """The current UTC time as ISO 8601 to the second (the table's timestamps)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def job_id_for(bucket: str, key: str, etag: str) -> str:
    """Deterministic job id from where the AOI is and what it holds (its ETag).

    A duplicate S3 event is the same job, and so is a re-upload of identical content to the
    same key; a changed AOI is a new job. The uploader can compute it from PutObject's reply.
    """
    return hashlib.sha256(f"s3://{bucket}/{key}#{etag.strip(chr(34))}".encode()).hexdigest()[:24]


def fraction_decimal(value: float | None) -> Decimal | None:
    """A fraction (0-1) as the Decimal the table stores, to 4 decimals; None stays None."""
    return None if value is None else Decimal(repr(float(value))).quantize(Decimal("0.0001"))


def area_decimal(value: float) -> Decimal:
    """An area in m2 as the Decimal the table stores: the float's shortest repr, quantized to
    ``AREA_QUANTUM`` (1e-3 m2), so sums of areas are exact."""
    return Decimal(repr(float(value))).quantize(AREA_QUANTUM)


def json_value(value):
    """``value`` with DynamoDB numbers (``Decimal``) and NumPy scalars made plain JSON values,
    recursively through lists and dicts; anything else is returned as it is.

    A Decimal without fractional digits (exponent >= 0, e.g. a counter ``Decimal('5')``) becomes
    an int; any other Decimal (``Decimal('12.500')``, ``Decimal('0.000')``) a float, so an area
    stays a float even when it is whole.
    """
    if isinstance(value, Decimal):
        if value == value.to_integral_value() and value.as_tuple().exponent >= 0:
            return int(value)
        return float(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, list):
        return [json_value(v) for v in value]
    if isinstance(value, dict):
        return {k: json_value(v) for k, v in value.items()}
    return value


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
    mask_key: str | None = None
    # Share of the tile holding imagery (0-1, 4 decimals) and the imagery's capture date(s)
    # (YYYY-MM-DD, a mosaic's newest first, comma-joined), where known (docs/imagery.md).
    valid_fraction: Decimal | None = None
    capture_date: str | None = None
    building_count: int | None = None

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


class ResultsStore:
    """The results table (``table``) through a boto3 DynamoDB client: job records and tile items."""

    def __init__(self, dynamodb_client, table: str):
        self.ddb = dynamodb_client
        self.table = table

    # ---- job records ---------------------------------------------------------------------
    def _job_key(self, job_id: str) -> dict:
        return marshal({TABLE_PARTITION_KEY: job_id, TABLE_SORT_KEY: JOB_SORT_KEY})

    def get_job(self, job_id: str) -> dict | None:
        """The job record (strongly consistent read), None when there is none."""
        resp = self.ddb.get_item(TableName=self.table, Key=self._job_key(job_id), ConsistentRead=True)
        return unmarshal(resp["Item"]) if "Item" in resp else None

    def create_job(self, job_id: str, attributes: dict) -> bool:
        """Write a new job record; False if the job already exists (a duplicate event)."""
        item = {
            TABLE_PARTITION_KEY: job_id,
            TABLE_SORT_KEY: JOB_SORT_KEY,
            "created_at": utc_now(),
            JOBS_INDEX_PARTITION_KEY: JOBS_INDEX_PARTITION_VALUE,  # in the sparse jobs index
            "building_area_m2": Decimal(0),
            "tiles_final": 0,
            **{counter: 0 for counter in COUNTER_OF_STATUS.values()},
            **attributes,
        }
        try:
            self.ddb.put_item(
                TableName=self.table,
                Item=marshal(item),
                ConditionExpression="attribute_not_exists(#pk)",
                ExpressionAttributeNames={"#pk": TABLE_PARTITION_KEY},
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def update_job(self, job_id: str, values: dict, only_if_status: tuple[str, ...] = ()) -> bool:
        """SET the given attributes; with ``only_if_status`` only from those statuses."""
        names = {f"#a{i}": k for i, k in enumerate(values)}
        vals = {f":v{i}": _ser.serialize(v) for i, v in enumerate(values.values())}
        expr = "SET " + ", ".join(f"#a{i} = :v{i}" for i in range(len(values)))
        kwargs = {}
        if only_if_status:
            names["#status"] = "status"
            allowed = []
            for i, status in enumerate(only_if_status):
                vals[f":s{i}"] = _ser.serialize(status)
                allowed.append(f":s{i}")
            kwargs["ConditionExpression"] = f"#status IN ({', '.join(allowed)})"
        try:
            self.ddb.update_item(
                TableName=self.table,
                Key=self._job_key(job_id),
                UpdateExpression=expr,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=vals,
                **kwargs,
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def fail_job(self, job_id: str, reason: str, attributes: dict | None = None) -> None:
        """Mark the job FAILED with ``reason`` (and further ``attributes``), finished now."""
        self.update_job(
            job_id,
            {"status": FAILED, "reason": reason, "finished_at": utc_now(), **(attributes or {})},
        )

    def try_complete(self, job_id: str) -> bool:
        """Mark the job COMPLETE if every tile has a final status. True only for the one caller
        that made the change, so completion happens exactly once."""
        try:
            self.ddb.update_item(
                TableName=self.table,
                Key=self._job_key(job_id),
                UpdateExpression="SET #status = :complete, finished_at = :now",
                ConditionExpression="#status IN (:enq, :run) AND tiles_final = tiles_total",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues=marshal(
                    {":complete": COMPLETE, ":now": utc_now(), ":enq": ENQUEUEING, ":run": RUNNING}
                ),
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    # ---- tile results --------------------------------------------------------------------
    def final_quadkeys(self, job_id: str, quadkeys: list[str]) -> set[str]:
        """Which of these tiles already have a result (so a redelivery can skip them)."""
        found: set[str] = set()
        for i in range(0, len(quadkeys), 100):
            keys = [
                marshal({TABLE_PARTITION_KEY: job_id, TABLE_SORT_KEY: TILE_SORT_PREFIX + qk})
                for qk in quadkeys[i : i + 100]
            ]
            request = {self.table: {"Keys": keys, "ProjectionExpression": "quadkey"}}
            while request:
                resp = self.ddb.batch_get_item(RequestItems=request)
                found.update(unmarshal(it)["quadkey"] for it in resp["Responses"].get(self.table, []))
                request = resp.get("UnprocessedKeys") or None
        return found

    def record_tiles(self, job_id: str, results: list[TileResult], provenance: dict) -> int:
        """Store tile results and move the job's counters once per new tile.

        Returns how many tiles were new. Tiles that already have an item (a redelivery, or a
        crash after a write) are left alone and counted nowhere.
        """
        new = 0
        for i in range(0, len(results), TILES_PER_TRANSACTION):
            chunk = results[i : i + TILES_PER_TRANSACTION]
            if self._transact(job_id, chunk, provenance):
                new += len(chunk)
            else:  # some tile already stored: fall back to one transaction per tile
                new += sum(self._transact(job_id, [r], provenance) for r in chunk)
        return new

    def _transact(self, job_id: str, chunk: list[TileResult], provenance: dict) -> bool:
        puts = [
            {
                "Put": {
                    "TableName": self.table,
                    "Item": marshal(r.item(job_id, provenance)),
                    "ConditionExpression": "attribute_not_exists(#pk)",
                    "ExpressionAttributeNames": {"#pk": TABLE_PARTITION_KEY},
                }
            }
            for r in chunk
        ]
        area = sum((r.building_area_m2 for r in chunk), Decimal(0))
        update = self._counter_update(job_id, [r.status for r in chunk], area, sign=1)
        return self._run_transaction(job_id, puts + [update])

    def _counter_update(self, job_id: str, statuses: list[str], area: Decimal, sign: int) -> dict:
        """The job-record action that adds (sign 1) or takes away (sign -1) these tiles."""
        counters: dict[str, int] = {}
        for status in statuses:
            name = COUNTER_OF_STATUS[status]
            counters[name] = counters.get(name, 0) + sign
        names = {"#area": "building_area_m2"}
        values: dict[str, object] = {":area": sign * area + 0, ":final": sign * len(statuses)}  # + 0: no "-0"
        adds = ["#area :area", "tiles_final :final"]
        for i, (name, n) in enumerate(counters.items()):
            names[f"#c{i}"] = name
            values[f":c{i}"] = n
            adds.append(f"#c{i} :c{i}")
        names["#pk"] = TABLE_PARTITION_KEY
        return {
            "Update": {
                "TableName": self.table,
                "Key": self._job_key(job_id),
                "UpdateExpression": "ADD " + ", ".join(adds),
                # Never create a job record: results of a job nobody created are refused.
                "ConditionExpression": "attribute_exists(#pk)",
                "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": marshal(values),
            }
        }

    def _run_transaction(self, job_id: str, actions: list[dict]) -> bool:
        """True once written; False if a tile's condition failed (nothing was written)."""
        for attempt in range(8):
            try:
                self.ddb.transact_write_items(TransactItems=actions)
                return True
            except ClientError as exc:
                if exc.response["Error"]["Code"] != "TransactionCanceledException":
                    raise
                reasons = [r.get("Code") for r in exc.response.get("CancellationReasons", [])]
                if reasons and reasons[-1] == "ConditionalCheckFailed":  # the job-record update
                    raise UnknownJob(f"job {job_id} has no job record: results for it are refused") from exc
                if "ConditionalCheckFailed" in reasons:
                    return False
                # TransactionConflict: another worker is updating the same job record.
                time.sleep(min(2.0, 0.05 * 2**attempt))
        raise RuntimeError(f"transaction for job {job_id} kept conflicting")

    def tile_items(self, job_id: str, quadkey_prefix: str = "") -> list[dict]:
        """All tile items of a job (optionally under a quadkey prefix), by key-range query."""
        items: list[dict] = []
        kwargs = {
            "TableName": self.table,
            "KeyConditionExpression": "#pk = :pk AND begins_with(#sk, :prefix)",
            "ExpressionAttributeNames": {"#pk": TABLE_PARTITION_KEY, "#sk": TABLE_SORT_KEY},
            "ExpressionAttributeValues": marshal(
                {":pk": job_id, ":prefix": TILE_SORT_PREFIX + quadkey_prefix}
            ),
        }
        while True:
            resp = self.ddb.query(**kwargs)
            items.extend(unmarshal(it) for it in resp["Items"])
            if "LastEvaluatedKey" not in resp:
                return items
            kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]

    def query_tiles(
        self,
        job_id: str,
        start: str = "",
        stop: str | None = None,
        attributes: tuple[str, ...] | None = None,
    ):
        """Yield the tile items of a job whose quadkey is in [``start``, ``stop``] (sort-key
        range; both quadkey strings, ``stop`` None means every quadkey beginning with ``start``),
        reading only ``attributes`` if given. One key-range query, paged; never a scan."""
        names = {"#pk": TABLE_PARTITION_KEY, "#sk": TABLE_SORT_KEY}
        if stop is None:
            condition = "#pk = :pk AND begins_with(#sk, :lo)"
            values = {":pk": job_id, ":lo": TILE_SORT_PREFIX + start}
        else:
            condition = "#pk = :pk AND #sk BETWEEN :lo AND :hi"
            # "~" sorts after every quadkey digit, so the range includes stop's descendants.
            values = {":pk": job_id, ":lo": TILE_SORT_PREFIX + start, ":hi": TILE_SORT_PREFIX + stop + "~"}
        kwargs = {
            "TableName": self.table,
            "KeyConditionExpression": condition,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": marshal(values),
        }
        if attributes:
            for i, attr in enumerate(attributes):
                names[f"#p{i}"] = attr
            kwargs["ProjectionExpression"] = ", ".join(f"#p{i}" for i in range(len(attributes)))
        while True:
            resp = self.ddb.query(**kwargs)
            for it in resp["Items"]:
                yield unmarshal(it)
            if "LastEvaluatedKey" not in resp:
                return
            kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]

    def quadkey_extent(self, job_id: str) -> tuple[str, str] | None:
        """The first and last quadkey of a job's tile items (two one-item queries), or None."""
        ends = []
        for forward in (True, False):
            resp = self.ddb.query(
                TableName=self.table,
                KeyConditionExpression="#pk = :pk AND begins_with(#sk, :prefix)",
                ExpressionAttributeNames={"#pk": TABLE_PARTITION_KEY, "#sk": TABLE_SORT_KEY},
                ExpressionAttributeValues=marshal({":pk": job_id, ":prefix": TILE_SORT_PREFIX}),
                ScanIndexForward=forward,
                Limit=1,
            )
            if not resp["Items"]:
                return None
            ends.append(unmarshal(resp["Items"][0])[TABLE_SORT_KEY][len(TILE_SORT_PREFIX) :])
        return ends[0], ends[1]

    def list_jobs(self, limit: int | None = None) -> list[dict]:
        """Jobs newest first, from the sparse jobs index (a query, never a scan of the table)."""
        kwargs = {
            "TableName": self.table,
            "IndexName": JOBS_INDEX_NAME,
            "KeyConditionExpression": "#pk = :pk",
            "ExpressionAttributeNames": {"#pk": JOBS_INDEX_PARTITION_KEY},
            "ExpressionAttributeValues": marshal({":pk": JOBS_INDEX_PARTITION_VALUE}),
            "ScanIndexForward": False,
        }
        jobs: list[dict] = []
        while limit is None or len(jobs) < limit:
            if limit is not None:
                kwargs["Limit"] = limit - len(jobs)
            resp = self.ddb.query(**kwargs)
            jobs.extend(unmarshal(it) for it in resp["Items"])
            if "LastEvaluatedKey" not in resp:
                break
            kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]
        return jobs

    # ---- retry ---------------------------------------------------------------------------
    def forget_tiles(self, job_id: str, tiles: list[dict]) -> int:
        """Delete tile items (each ``{"quadkey", "status", "building_area_m2"}``) and take them
        out of the job's counters, in the same transactions, each delete on the condition that
        the item still has that status, so counters stay equal to the sum of the items.
        Returns how many were deleted. Used by retry before the tiles are enqueued again."""
        forgotten = 0
        for i in range(0, len(tiles), TILES_PER_TRANSACTION):
            chunk = tiles[i : i + TILES_PER_TRANSACTION]
            if self._forget(job_id, chunk):
                forgotten += len(chunk)
            else:  # one changed under us: one transaction per tile
                forgotten += sum(self._forget(job_id, [t]) for t in chunk)
        return forgotten

    def _forget(self, job_id: str, chunk: list[dict]) -> bool:
        deletes = [
            {
                "Delete": {
                    "TableName": self.table,
                    "Key": marshal({TABLE_PARTITION_KEY: job_id, TABLE_SORT_KEY: TILE_SORT_PREFIX + t["quadkey"]}),
                    "ConditionExpression": "#status = :status",
                    "ExpressionAttributeNames": {"#status": "status"},
                    "ExpressionAttributeValues": marshal({":status": t["status"]}),
                }
            }
            for t in chunk
        ]
        area = sum((Decimal(t.get("building_area_m2", 0)) for t in chunk), Decimal(0))
        update = self._counter_update(job_id, [t["status"] for t in chunk], area, sign=-1)
        return self._run_transaction(job_id, deletes + [update])

    def reopen_job(self, job_id: str) -> bool:
        """A COMPLETE or RUNNING job goes (back) to RUNNING for a retry; False otherwise."""
        try:
            self.ddb.update_item(
                TableName=self.table,
                Key=self._job_key(job_id),
                UpdateExpression="SET #status = :run, retried_at = :now REMOVE finished_at",
                ConditionExpression="#status IN (:complete, :run)",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues=marshal({":run": RUNNING, ":complete": COMPLETE, ":now": utc_now()}),
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True
