"""Exactly-once tile results: tile items in batches, counters moved by one small transaction per unit.

Every tile result names a *ledger* (``TileResult.ledger``: its work unit's id, or the tile itself
for a result recorded outside a unit). A ledger is one small item, ``sort_key = unit#<ledger>``,
holding ``counted`` (the tiles it has counted, as the numbers ``y * 2**z + x``) and a version
``v``. Recording a unit's results (docs/results.md#exactly-once):

1. read the ledger and check that the job record exists (one BatchGetItem, strongly consistent);
2. write the items of the tiles the ledger has not counted (BatchWriteItem, 25 at a time, with the
   unprocessed ones retried with backoff): an item can be written again, never counted twice;
3. one transaction: the ledger with those tiles added, on the condition that its version is the
   one read (or that it does not exist yet), and the job's counters moved by those tiles.
   If the version moved (another worker holding the same message got there first) nothing is
   written: read again, and count only what is still uncounted.

A tile is *final* (``final_quadkeys``: a redelivery skips it) only when its item exists **and** its
ledger counts it, so a crash between the item write and the transaction means the tile is done
again and counted then. Retry (``forget_tiles``) deletes items, takes them off the counters and
out of their ledgers in the same transactions.
"""

from __future__ import annotations

import random
import time
from decimal import Decimal

from botocore.exceptions import ClientError

from looking_glass.pipeline.table import (
    COUNTER_OF_STATUS,
    TileResult,
    UnknownJob,
    marshal,
    unmarshal,
)
from looking_glass.runtime.resources import JOB_SORT_KEY, TABLE_PARTITION_KEY, TABLE_SORT_KEY, TILE_SORT_PREFIX

LEDGER_SORT_PREFIX = "unit#"
BATCH_WRITE_LIMIT = 25  # DynamoDB's BatchWriteItem limit
BATCH_GET_LIMIT = 100  # DynamoDB's BatchGetItem limit
FORGET_PER_TRANSACTION = 49  # 49 deletes + up to 49 ledger updates + the job update <= 100 actions
_ATTEMPTS = 10


def tile_number(x: int, y: int, z: int) -> int:
    """A tile's number in a ledger's ``counted`` set: ``y * 2**z + x`` (unique per zoom)."""
    return int(y) * (1 << int(z)) + int(x)


def _backoff(attempt: int) -> None:
    """Exponential backoff with full jitter (capped at 2 s) before retrying a throttled or
    conflicting request."""
    time.sleep(random.uniform(0, min(2.0, 0.05 * 2**attempt)))


class TileLedger:
    """The tile-result half of ``ResultsStore``: expects ``self.ddb`` (a boto3 DynamoDB client),
    ``self.table`` and ``self._job_key(job_id)``."""

    def _ledger_key(self, job_id: str, ledger: str) -> dict:
        return marshal({TABLE_PARTITION_KEY: job_id, TABLE_SORT_KEY: LEDGER_SORT_PREFIX + ledger})

    def _batch_get(self, keys: list[dict], projection: str, names: dict, consistent: bool = True) -> list[dict]:
        """Items for ``keys`` (typed), strongly consistent unless not ``consistent`` (half the
        read units), unprocessed keys retried with backoff."""
        items: list[dict] = []
        for i in range(0, len(keys), BATCH_GET_LIMIT):
            request = {self.table: {"Keys": keys[i : i + BATCH_GET_LIMIT], "ProjectionExpression": projection,
                                    "ExpressionAttributeNames": names, "ConsistentRead": consistent}}
            attempt = 0
            while request:
                resp = self.ddb.batch_get_item(RequestItems=request)
                items.extend(unmarshal(it) for it in resp["Responses"].get(self.table, []))
                request = resp.get("UnprocessedKeys") or None
                if request:
                    _backoff(attempt)
                    attempt += 1
        return items

    def _batch_put(self, items: list[dict]) -> None:
        """Write ``items`` (plain) with BatchWriteItem, retrying unprocessed ones with backoff."""
        for i in range(0, len(items), BATCH_WRITE_LIMIT):
            pending = [{"PutRequest": {"Item": marshal(it)}} for it in items[i : i + BATCH_WRITE_LIMIT]]
            for attempt in range(_ATTEMPTS):
                resp = self.ddb.batch_write_item(RequestItems={self.table: pending})
                pending = resp.get("UnprocessedItems", {}).get(self.table, [])
                if not pending:
                    break
                _backoff(attempt)
            else:
                raise RuntimeError(f"{len(pending)} tile items stayed unprocessed after {_ATTEMPTS} attempts")

    # ---- recording -----------------------------------------------------------------------
    def record_tiles(self, job_id: str, results: list[TileResult], provenance: dict) -> int:
        """Store tile results and move the job's counters once per tile (module docstring).

        Returns how many tiles this call counted. Tiles their ledger already counts (a
        redelivery, a crash after the transaction, another worker on the same message) are
        neither written again nor counted. Raises UnknownJob when the job has no record.
        """
        ledgers: dict[str, list[TileResult]] = {}
        for r in results:
            ledgers.setdefault(r.ledger, []).append(r)
        return sum(self._record_ledger(job_id, ledger, group, provenance) for ledger, group in ledgers.items())

    def _read_ledger(self, job_id: str, ledger: str) -> tuple[int, set[int]]:
        """(version, counted) of a ledger (0 and empty when it does not exist yet); raises
        UnknownJob when the job has no record, before anything is written."""
        found = self._batch_get(
            [self._ledger_key(job_id, ledger), self._job_key(job_id)], "#pk, #sk, #c, #v",
            {"#pk": TABLE_PARTITION_KEY, "#sk": TABLE_SORT_KEY, "#c": "counted", "#v": "v"},
        )
        by_sort = {it[TABLE_SORT_KEY]: it for it in found}
        if JOB_SORT_KEY not in by_sort:
            raise UnknownJob(f"job {job_id} has no job record: results for it are refused")
        entry = by_sort.get(LEDGER_SORT_PREFIX + ledger)
        if entry is None:
            return 0, set()
        return int(entry.get("v", 0)), {int(n) for n in entry.get("counted", ())}

    def _record_ledger(self, job_id: str, ledger: str, group: list[TileResult], provenance: dict) -> int:
        written: set[int] = set()
        for attempt in range(_ATTEMPTS):
            version, counted = self._read_ledger(job_id, ledger)
            new = [r for r in group if tile_number(r.x, r.y, r.z) not in counted]
            if not new:
                return 0
            numbers = {tile_number(r.x, r.y, r.z) for r in new}
            self._batch_put([r.item(job_id, provenance) for r in new if tile_number(r.x, r.y, r.z) not in written])
            written |= numbers
            entry = {TABLE_PARTITION_KEY: job_id, TABLE_SORT_KEY: LEDGER_SORT_PREFIX + ledger,
                     "counted": counted | numbers, "v": version + 1}
            condition = ("attribute_not_exists(#pk)", {}) if version == 0 else ("#v = :v", {":v": version})
            put = {"Put": {"TableName": self.table, "Item": marshal(entry), "ConditionExpression": condition[0],
                           "ExpressionAttributeNames": {"#pk": TABLE_PARTITION_KEY} if version == 0 else {"#v": "v"}}}
            if condition[1]:
                put["Put"]["ExpressionAttributeValues"] = marshal(condition[1])
            area = sum((r.building_area_m2 for r in new), Decimal(0))
            update = self._counter_update(job_id, [r.status for r in new], area, sign=1)
            if self._run_transaction(job_id, [put, update]):
                return len(new)
            _backoff(attempt)  # the ledger moved: another worker counted some of these; read again
        raise RuntimeError(f"ledger {ledger} of job {job_id} kept changing under this worker")

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
        """True once written; False if a condition other than the last action's failed (nothing
        was written). The last action is the job-record update: its failure is UnknownJob."""
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
                _backoff(attempt)
        raise RuntimeError(f"transaction for job {job_id} kept conflicting")

    # ---- reading -------------------------------------------------------------------------
    def final_quadkeys(self, job_id: str, quadkeys: list[str]) -> set[str]:
        """Which of these tiles are final: stored and counted by their ledger (so a redelivery
        can skip them). A tile whose item exists but whose ledger has not counted it (a crash
        between the two writes) is not final: it is done again and counted then."""
        keys = [marshal({TABLE_PARTITION_KEY: job_id, TABLE_SORT_KEY: TILE_SORT_PREFIX + qk}) for qk in quadkeys]
        # Eventually consistent reads (half the read units): a tile found not final that is final
        # after all is done again and counted by nobody (the ledger), so a stale answer costs
        # time, never a count.
        items = self._batch_get(keys, "#q, #u, #x, #y, #z", {"#q": "quadkey", "#u": "unit", "#x": "x", "#y": "y", "#z": "z"},
                                consistent=False)
        ledgers = sorted({it["unit"] for it in items if "unit" in it})
        ledger_items = self._batch_get(
            [self._ledger_key(job_id, lg) for lg in ledgers], "#sk, #c", {"#sk": TABLE_SORT_KEY, "#c": "counted"},
            consistent=False,
        )
        counted = {it[TABLE_SORT_KEY][len(LEDGER_SORT_PREFIX) :]: {int(n) for n in it.get("counted", ())}
                   for it in ledger_items}
        return {
            it["quadkey"]
            for it in items
            # An item without a ledger was written, and counted in the same transaction, by a
            # worker from before the ledgers.
            if "unit" not in it or tile_number(it["x"], it["y"], it["z"]) in counted.get(it["unit"], ())
        }

    # ---- retry ---------------------------------------------------------------------------
    def forget_tiles(self, job_id: str, tiles: list[dict]) -> int:
        """Delete tile items (each ``{"quadkey", "x", "y", "z", "status", "building_area_m2",
        "unit"}`` as stored) and take them out of the job's counters and out of their ledgers,
        in the same transactions, each delete on the condition that the item still has that
        status, so counters stay equal to the sum of the items. Returns how many were deleted.
        Used by retry before the tiles are enqueued again."""
        forgotten = 0
        for i in range(0, len(tiles), FORGET_PER_TRANSACTION):
            chunk = tiles[i : i + FORGET_PER_TRANSACTION]
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
        uncount: dict[str, set[int]] = {}
        for t in chunk:
            if t.get("unit"):  # items from before the ledgers have none
                uncount.setdefault(t["unit"], set()).add(tile_number(t["x"], t["y"], t["z"]))
        ledgers = [
            {
                "Update": {
                    "TableName": self.table,
                    "Key": self._ledger_key(job_id, ledger),
                    # The version moves too, so a worker that read the ledger before cannot
                    # write its older ``counted`` back.
                    "UpdateExpression": "DELETE #c :n ADD #v :one",
                    "ExpressionAttributeNames": {"#c": "counted", "#v": "v"},
                    "ExpressionAttributeValues": marshal({":n": numbers, ":one": 1}),
                }
            }
            for ledger, numbers in uncount.items()
        ]
        area = sum((Decimal(t.get("building_area_m2", 0)) for t in chunk), Decimal(0))
        update = self._counter_update(job_id, [t["status"] for t in chunk], area, sign=-1)
        return self._run_transaction(job_id, deletes + ledgers + [update])
