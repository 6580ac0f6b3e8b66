"""The results table: job records and per-tile result items (DynamoDB).

Key schema (``resources``): partition ``job_id``; sort ``job`` for the job record,
``pack#<quadkey[:-3]>`` for each pack of up to 64 tiles (``looking_glass.pipeline.packs``;
``tile#<quadkey>``, one item per tile, in tables written before the packs) and ``unit#<unit id>``
for each work unit's ledger. Tile results
move the job's totals exactly once, whatever SQS redelivers (``looking_glass.pipeline.ledger``).
"""

from __future__ import annotations

import hashlib
from decimal import Decimal

import numpy as np
from boto3.dynamodb.types import TypeSerializer
from botocore.exceptions import ClientError

from looking_glass.pipeline.ledger import TILE_LAYOUT, TILE_LAYOUT_ATTRIBUTE, TileLedger
from looking_glass.pipeline.table import (  # noqa: F401 - re-exported: the store's vocabulary
    AREA_QUANTUM,
    COUNTER_OF_STATUS,
    TileResult,
    UnknownJob,
    area_decimal,
    fraction_decimal,
    marshal,
    unmarshal,
    utc_now,
)
from looking_glass.pipeline.tile_reads import TileReads
from looking_glass.runtime.resources import (  # noqa: F401 - re-exported
    JOB_SORT_KEY,
    JOBS_INDEX_NAME,
    JOBS_INDEX_PARTITION_KEY,
    JOBS_INDEX_PARTITION_VALUE,
    PACK_SORT_PREFIX,
    TABLE_PARTITION_KEY,
    TABLE_SORT_KEY,
    TILE_SORT_PREFIX,
)

# Job statuses.
ENQUEUEING = "ENQUEUEING"  # record written, work being enqueued
RUNNING = "RUNNING"  # all work enqueued, workers started
COMPLETE = "COMPLETE"  # every tile has a final status
FAILED = "FAILED"  # the AOI or job could not be processed; see `reason`

_ser = TypeSerializer()


def job_id_for(bucket: str, key: str, etag: str) -> str:
    """Deterministic job id from where the AOI is and what it holds (its ETag).

    A duplicate S3 event is the same job, and so is a re-upload of identical content to the
    same key; a changed AOI is a new job. The uploader can compute it from PutObject's reply.
    """
    return hashlib.sha256(f"s3://{bucket}/{key}#{etag.strip(chr(34))}".encode()).hexdigest()[:24]


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


class ResultsStore(TileLedger, TileReads):
    """The results table (``table``) through a boto3 DynamoDB client: job records and tile
    results (in packs: recorded exactly once by :class:`~looking_glass.pipeline.ledger.TileLedger`,
    read by quadkey range by :class:`~looking_glass.pipeline.tile_reads.TileReads`)."""

    def __init__(self, dynamodb_client, table: str):
        self.ddb = dynamodb_client
        self.table = table
        self._packs_only: dict[str, bool] = {}  # job id: its tiles are all in packs (TileReads)

    # ---- job records ---------------------------------------------------------------------
    def _job_key(self, job_id: str) -> dict:
        return marshal({TABLE_PARTITION_KEY: job_id, TABLE_SORT_KEY: JOB_SORT_KEY})

    def get_job(self, job_id: str) -> dict | None:
        """The job record (strongly consistent read), None when there is none."""
        resp = self.ddb.get_item(TableName=self.table, Key=self._job_key(job_id), ConsistentRead=True)
        if "Item" not in resp:
            return None
        job = unmarshal(resp["Item"])
        self.note_layout(job)  # the tile readers need not ask again
        return job

    def create_job(self, job_id: str, attributes: dict) -> bool:
        """Write a new job record; False if the job already exists (a duplicate event). Sent
        again while a transaction holds the record (``TransactionConflictException``), as
        :meth:`update_job` is; RuntimeError after 10 such refusals."""
        item = {
            TABLE_PARTITION_KEY: job_id,
            TABLE_SORT_KEY: JOB_SORT_KEY,
            "created_at": utc_now(),
            JOBS_INDEX_PARTITION_KEY: JOBS_INDEX_PARTITION_VALUE,  # in the sparse jobs index
            "building_area_m2": Decimal(0),
            "tiles_final": 0,
            TILE_LAYOUT_ATTRIBUTE: TILE_LAYOUT,  # its tiles are all in packs (ledger._located)
            **{counter: 0 for counter in COUNTER_OF_STATUS.values()},
            **attributes,
        }
        try:
            # Sent again while a transaction holds the record: a duplicate S3 event whose handler
            # read no record before the first handler created it, and whose put arrives while
            # the first workers' ledger transactions move the record (the resend then finds it).
            self._sent_again("PutItem", self.ddb.put_item, {
                "TableName": self.table,
                "Item": marshal(item),
                "ConditionExpression": "attribute_not_exists(#pk)",
                "ExpressionAttributeNames": {"#pk": TABLE_PARTITION_KEY},
            })
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def update_job(self, job_id: str, values: dict, only_if_status: tuple[str, ...] = (),
                   remove: tuple[str, ...] = ()) -> bool:
        """SET the given attributes (and REMOVE those named in ``remove``); with
        ``only_if_status`` only from those statuses (False when the status is another)."""
        names = {f"#a{i}": k for i, k in enumerate(values)}
        vals = {f":v{i}": _ser.serialize(v) for i, v in enumerate(values.values())}
        expr = "SET " + ", ".join(f"#a{i} = :v{i}" for i in range(len(values)))
        if remove:
            names.update({f"#r{i}": k for i, k in enumerate(remove)})
            expr += " REMOVE " + ", ".join(f"#r{i}" for i in range(len(remove)))
        kwargs = {}
        if only_if_status:
            names["#status"] = "status"
            allowed = []
            for i, status in enumerate(only_if_status):
                vals[f":s{i}"] = _ser.serialize(status)
                allowed.append(f":s{i}")
            kwargs["ConditionExpression"] = f"#status IN ({', '.join(allowed)})"
        try:
            self._update_item(
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

    def all_final(self, job_id: str) -> bool:
        """Whether every tile of a RUNNING or ENQUEUEING job is final (a strongly consistent read,
        which costs no write units; a BatchGetItem, the read the worker is granted): only then is
        :meth:`try_complete`, a conditional write that is billed even when its condition fails,
        worth calling."""
        found = self._batch_get([self._job_key(job_id)], "#s, #f, #t",
                                {"#s": "status", "#f": "tiles_final", "#t": "tiles_total"})
        job = found[0] if found else {}
        return job.get("status") in (ENQUEUEING, RUNNING) and job.get("tiles_final") == job.get("tiles_total")

    def try_complete(self, job_id: str) -> bool:
        """Mark the job COMPLETE if every tile has a final status. True only for the one caller
        that made the change, so completion happens exactly once."""
        try:
            self._update_item(
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

    def note_retry(self, job_id: str, reason: str) -> bool:
        """Record on a RUNNING or ENQUEUEING job why a work unit was just kept for redelivery
        (``reason``: the tile and its transient failure, e.g. ``tile 18/1/2: ConnectionError after
        4 attempts``), as ``retry_reason`` and ``retry_at`` (UTC): the last one wins. One
        UpdateItem per unit kept (never per tile), so ``status`` and ``submit --wait`` can say why
        a job is not moving, which the worker's log alone said before. False when the job is
        final (nothing written)."""
        return self.update_job(job_id, {"retry_reason": reason[:500], "retry_at": utc_now()},
                               only_if_status=(RUNNING, ENQUEUEING))

    def reopen_job(self, job_id: str, earlier_reason: str = "") -> bool:
        """A COMPLETE, RUNNING or FAILED job goes (back) to RUNNING for a retry (its last
        ``retry_reason`` dropped: the next kept unit records its own; a FAILED job's ``reason``
        dropped too, kept as ``earlier_reason`` when the caller passes it: once its tiles are
        final it ends COMPLETE, not FAILED with a stale reason); False otherwise (ENQUEUEING)."""
        values = {":run": RUNNING, ":complete": COMPLETE, ":failed": FAILED, ":now": utc_now()}
        keep = ""
        if earlier_reason:
            values[":earlier"] = earlier_reason[:1000]
            keep = ", earlier_reason = :earlier"
        try:
            self._update_item(
                TableName=self.table,
                Key=self._job_key(job_id),
                UpdateExpression=f"SET #status = :run, retried_at = :now{keep} "
                                 "REMOVE finished_at, retry_reason, retry_at, reason",
                ConditionExpression="#status IN (:complete, :run, :failed)",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues=marshal(values),
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True
