"""Exactly-once tile results: tile packs written attribute by attribute, counters moved by one
small transaction per unit.

Every tile result names a *ledger* (``TileResult.ledger``: its work unit's id, or the tile itself
for a result recorded outside a unit). A ledger is one small item, ``sort_key = unit#<ledger>``,
holding ``counted`` (the tiles it has counted, as the numbers ``y * 2**z + x``) and a version
``v``. Tile results live in *packs* (``looking_glass.pipeline.packs``: up to 64 tiles in one
item). Recording a unit's results (docs/results.md#exactly-once):

1. read the ledger and check that the job record exists (one BatchGetItem, strongly consistent);
2. write the tiles the ledger has not counted into their packs, one UpdateItem per pack that
   SETs only those tiles' attributes (and their delivery and provenance): a tile can be written
   again, never counted twice, and writers of other tiles of the same pack lose nothing;
3. one transaction: the ledger with those tiles added, on the condition that its version is the
   one read (or that it does not exist yet), and the job's counters moved by those tiles.
   If the version moved (another worker holding the same message got there first, or retry
   took tiles out) nothing is written: read again, and write and count what is still uncounted.

A tile is *final* (``final_quadkeys``: a redelivery skips it) only when it is in its pack **and**
its ledger counts it, so a crash between the pack write and the transaction means the tile is
done again and counted then. Retry (``forget_tiles``) removes tiles from their packs (each on the
condition that it still has the status read) and takes those their ledger counts (read strongly
consistent, and unchanged since) off the counters and out of their ledgers in the same
transactions. Tables written before the packs hold one item per tile
(``tile#<quadkey>``): they are read, and retried, as well; where a tile is in both, its pack wins.
"""

from __future__ import annotations

import random
import time
from decimal import Decimal

from botocore.exceptions import ClientError

from looking_glass.pipeline.packs import pack_attributes, pack_of, pack_sort_key, tile_attribute, unpack, unreferenced
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
# Per transaction, at most 3 actions a tile (its pack, an older per-tile item of it, its ledger)
# and the job update: 33 * 3 + 1 <= 100, DynamoDB's limit.
FORGET_PER_TRANSACTION = 33
TILES_PER_UPDATE = 64  # a pack's tiles per UpdateItem: its expression stays under DynamoDB's 4 KB
# The job record of a job created since the packs says so: its workers need not look for per-tile
# items (they may not Query, and a BatchGetItem of 64 keys that are not there costs 32 read units).
TILE_LAYOUT_ATTRIBUTE, TILE_LAYOUT = "tile_layout", "packs"
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

    def _update_item(self, **params) -> dict:
        """``self.ddb.update_item(**params)``, sent again while a transaction holds the item
        (:meth:`_sent_again`)."""
        return self._sent_again("UpdateItem", self.ddb.update_item, params)

    def _sent_again(self, operation: str, send, params: dict) -> dict:
        """``send(**params)`` (the client's ``operation``, an UpdateItem or PutItem of one item),
        sent again with backoff while DynamoDB refuses it with ``TransactionConflictException``
        (the item is being changed by an unfinished transaction: retry's removes whole packs that
        workers write, a unit's ledger transaction moves the job record), which botocore does not
        retry. Other errors (a failed condition) propagate at once; RuntimeError after
        ``_ATTEMPTS`` conflicts."""
        for attempt in range(_ATTEMPTS):
            try:
                return send(**params)
            except ClientError as exc:
                if exc.response["Error"]["Code"] != "TransactionConflictException":
                    raise
                conflict = exc
            if attempt < _ATTEMPTS - 1:
                _backoff(attempt)
        key = params.get("Key") or {k: params["Item"][k] for k in (TABLE_PARTITION_KEY, TABLE_SORT_KEY)}
        raise RuntimeError(f"{operation} of {unmarshal(key)} in table {params['TableName']} kept "
                           f"conflicting with a transaction after {_ATTEMPTS} attempts") from conflict

    def _key(self, job_id: str, sort_key: str) -> dict:
        return marshal({TABLE_PARTITION_KEY: job_id, TABLE_SORT_KEY: sort_key})

    def _ledger_key(self, job_id: str, ledger: str) -> dict:
        return self._key(job_id, LEDGER_SORT_PREFIX + ledger)

    def _batch_get(self, keys: list[dict], projection: str | None = None, names: dict | None = None,
                   consistent: bool = True) -> list[dict]:
        """Items for ``keys`` (typed; whole items unless a ``projection`` with its ``names``),
        strongly consistent unless not ``consistent`` (half the read units), unprocessed keys
        retried with backoff."""
        items: list[dict] = []
        for i in range(0, len(keys), BATCH_GET_LIMIT):
            request: dict = {"Keys": keys[i : i + BATCH_GET_LIMIT], "ConsistentRead": consistent}
            if projection:
                request.update(ProjectionExpression=projection, ExpressionAttributeNames=names)
            pending: dict | None = {self.table: request}
            attempt = 0
            while pending:
                resp = self.ddb.batch_get_item(RequestItems=pending)
                items.extend(unmarshal(it) for it in resp["Responses"].get(self.table, []))
                pending = resp.get("UnprocessedKeys") or None
                if pending:
                    _backoff(attempt)
                    attempt += 1
        return items

    def _batch_put(self, items: list[dict]) -> None:
        """Write whole ``items`` (plain) with BatchWriteItem, retrying unprocessed ones with
        backoff. Tile results are never written this way any more (a whole-item write of a pack
        would drop the tiles another writer put in it); per-tile items are how workers before
        the packs stored tiles, and tests build such tables with it."""
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

    def _write_packs(self, job_id: str, items: list[dict]) -> None:
        """Write tile items (``TileResult.item``) into their packs: per pack, one UpdateItem that
        SETs the tiles' attributes, their deliveries and provenance, and nothing else, so tiles
        that other writers put in the same pack stay (module docstring)."""
        packs: dict[str, dict[str, dict]] = {}
        for item in items:
            packs.setdefault(pack_of(item["quadkey"]), {})[item["quadkey"]] = item
        for pack, tiles in sorted(packs.items()):
            quadkeys = sorted(tiles)
            for i in range(0, len(quadkeys), TILES_PER_UPDATE):
                attributes: dict[str, dict] = {}
                for qk in quadkeys[i : i + TILES_PER_UPDATE]:
                    attributes.update(pack_attributes(tiles[qk]))
                names = {f"#a{n}": name for n, name in enumerate(attributes)}
                values = {f":v{n}": value for n, value in enumerate(attributes.values())}
                self._update_item(
                    TableName=self.table,
                    Key=self._key(job_id, pack_sort_key(pack)),
                    UpdateExpression="SET " + ", ".join(f"#a{n} = :v{n}" for n in range(len(names))),
                    ExpressionAttributeNames=names,
                    ExpressionAttributeValues=marshal(values),
                )

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
        for attempt in range(_ATTEMPTS):
            version, counted = self._read_ledger(job_id, ledger)
            new = [r for r in group if tile_number(r.x, r.y, r.z) not in counted]
            if not new:
                return 0
            numbers = {tile_number(r.x, r.y, r.z) for r in new}
            # Every attempt writes the tiles it is about to count, even those an earlier attempt
            # wrote: what moved the ledger may be a retry that removed them from their packs, and
            # a tile counted but not stored would be counted again by its redo.
            self._write_packs(job_id, [r.item(job_id, provenance) for r in new])
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
            _backoff(attempt)  # the ledger moved: another worker counted, or retry forgot; read again
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
    def has_legacy_items(self, job_id: str, consistent: bool = False) -> bool:
        """Whether the job has any per-tile item (``tile#<quadkey>``), as workers before the packs
        wrote (one one-item query, half a read unit)."""
        resp = self.ddb.query(
            TableName=self.table,
            KeyConditionExpression="#pk = :pk AND begins_with(#sk, :prefix)",
            ExpressionAttributeNames={"#pk": TABLE_PARTITION_KEY, "#sk": TABLE_SORT_KEY},
            ExpressionAttributeValues=marshal({":pk": job_id, ":prefix": TILE_SORT_PREFIX}),
            ProjectionExpression="#sk", Limit=1, ConsistentRead=consistent,
        )
        return bool(resp["Items"])

    def _located(self, job_id: str, quadkeys: list[str], consistent: bool,
                 legacy: bool | None = None) -> tuple[dict[str, dict], dict[str, dict]]:
        """(in packs, in per-tile items): the stored item of each of these tiles found in its
        pack, and of those found as an older per-tile item. Those are read when ``legacy``, or,
        when it is None, when the job's record (read with the packs) does not say that its tiles
        were written in packs from the start (``TILE_LAYOUT``: jobs created before the packs)."""
        wanted = set(quadkeys)
        keys = [self._key(job_id, pack_sort_key(p)) for p in sorted({pack_of(qk) for qk in wanted})]
        found = self._batch_get(keys + ([self._job_key(job_id)] if legacy is None else []), consistent=consistent)
        packed = {item["quadkey"]: item for pack in found if pack[TABLE_SORT_KEY] != JOB_SORT_KEY
                  for item in unpack(pack) if item["quadkey"] in wanted}
        if legacy is None:
            job = next((it for it in found if it[TABLE_SORT_KEY] == JOB_SORT_KEY), None)
            legacy = job is not None and job.get(TILE_LAYOUT_ATTRIBUTE) != TILE_LAYOUT
        items: dict[str, dict] = {}
        if legacy:
            keys = [self._key(job_id, TILE_SORT_PREFIX + qk) for qk in sorted(wanted)]
            items = {it[TABLE_SORT_KEY][len(TILE_SORT_PREFIX) :]: it for it in self._batch_get(keys, consistent=consistent)}
        return packed, items

    def final_quadkeys(self, job_id: str, quadkeys: list[str]) -> set[str]:
        """Which of these tiles are final: stored and counted by their ledger (so a redelivery
        can skip them). A tile stored but not counted by its ledger (a crash between the two
        writes) is not final: it is done again and counted then."""
        # The packs are read eventually consistent (half the read units): a tile is counted only
        # after its pack write, and retry removes it from its pack in the same transaction that
        # uncounts it, so a stale pack either lacks a tile (done again, counted by nobody: the
        # ledger says so) or holds one whose ledger is read below. The ledgers are read strongly
        # consistent: a stale ledger could still count a tile that retry has just removed and
        # uncounted, the retry unit would skip it, and nobody would count it again.
        packed, legacy = self._located(job_id, quadkeys, consistent=False)
        items = list({**legacy, **packed}.values())  # a tile in both: its pack is the newer
        ledgers = sorted({it["unit"] for it in items if "unit" in it})
        ledger_items = self._batch_get(
            [self._ledger_key(job_id, lg) for lg in ledgers], "#sk, #c", {"#sk": TABLE_SORT_KEY, "#c": "counted"},
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
        """Remove tiles (each ``{"quadkey", "x", "y", "z", "status", "building_area_m2", "unit"}``
        as stored) from their packs (or delete their per-tile items, in tables written before the
        packs) and take those their ledger counts out of the job's counters and out of their
        ledgers, in the same transactions, each on the condition that the tile still has that
        status and its ledger the version read (strongly consistent), so counters stay equal to
        the sum of the counted tiles. A tile stored but never counted (its unit crashed between
        its pack write and its transaction) is removed and not uncounted. Returns how many were
        removed. Used by retry before the tiles are enqueued again."""
        legacy = self.has_legacy_items(job_id, consistent=True)
        forgotten = 0
        for i in range(0, len(tiles), FORGET_PER_TRANSACTION):
            chunk = tiles[i : i + FORGET_PER_TRANSACTION]
            if self._forget(job_id, chunk, legacy):
                forgotten += len(chunk)
            else:  # one changed under us: one transaction per tile
                forgotten += sum(self._forget(job_id, [t], legacy) for t in chunk)
        return forgotten

    def _forget(self, job_id: str, chunk: list[dict], legacy: bool) -> bool:
        in_packs, in_items = self._located(job_id, [t["quadkey"] for t in chunk], True, legacy) if legacy else ({}, {})
        removes: dict[str, list[dict]] = {}
        deletes = []
        for t in chunk:
            qk = t["quadkey"]
            if qk in in_items:
                # A per-tile item the tile's pack supersedes is deleted whatever it holds; one
                # that is the tile's only result, on the condition that it has that status.
                condition = {} if qk in in_packs else {
                    "ConditionExpression": "#status = :status", "ExpressionAttributeNames": {"#status": "status"},
                    "ExpressionAttributeValues": marshal({":status": t["status"]})}
                deletes.append({"Delete": {"TableName": self.table, "Key": self._key(job_id, TILE_SORT_PREFIX + qk),
                                           **condition}})
            if qk in in_packs or qk not in in_items:  # not found at all: the condition fails
                removes.setdefault(pack_of(qk), []).append(t)
        # The packs as they are, for the deliveries and provenances no tile will refer to any more
        # (packs.unreferenced), removed with the tiles.
        read = self._batch_get([self._key(job_id, pack_sort_key(p)) for p in sorted(removes)]) if removes else []
        stale = {it[TABLE_SORT_KEY]: it for it in read}
        packs = [self._pack_remove(job_id, pack, group, stale.get(pack_sort_key(pack), {}))
                 for pack, group in sorted(removes.items())]
        # Only tiles their ledger counts come off the counters: a tile stored but never counted
        # (its unit crashed between the pack write and its transaction) leaves its pack and
        # nothing else, or its redo, counted once, would leave the job one short for ever. Each
        # ledger is checked at the version read, and moved on, so a worker that counts or
        # uncounts in the meantime cancels this transaction (forget_tiles then goes tile by tile).
        units = sorted({t["unit"] for t in chunk if t.get("unit")})  # items from before the ledgers have none
        found = {it[TABLE_SORT_KEY][len(LEDGER_SORT_PREFIX) :]: it for it in self._batch_get(
            [self._ledger_key(job_id, u) for u in units], "#sk, #c, #v", {"#sk": TABLE_SORT_KEY, "#c": "counted", "#v": "v"})}
        numbers = {u: {int(n) for n in it.get("counted", ())} for u, it in found.items()}
        counted = [t for t in chunk if not t.get("unit") or tile_number(t["x"], t["y"], t["z"]) in numbers.get(t["unit"], ())]
        ledgers = [self._ledger_forget(job_id, u, found.get(u), [t for t in counted if t.get("unit") == u])
                   for u in units]
        area = sum((Decimal(t.get("building_area_m2", 0)) for t in counted), Decimal(0))
        update = self._counter_update(job_id, [t["status"] for t in counted], area, sign=-1)
        return self._run_transaction(job_id, packs + deletes + ledgers + [update])

    def _ledger_forget(self, job_id: str, ledger: str, entry: dict | None, counted: list[dict]) -> dict:
        """The transaction action on one ledger (``entry`` as read, None when it does not exist)
        for a retry: take these ``counted`` tiles out of it and move its version, on the
        condition that the version is the one read, so a worker that read the ledger before
        cannot write its older ``counted`` back; a ledger that did not exist must still not."""
        key = self._ledger_key(job_id, ledger)
        if entry is None:
            return {"ConditionCheck": {"TableName": self.table, "Key": key, "ConditionExpression": "attribute_not_exists(#pk)",
                                       "ExpressionAttributeNames": {"#pk": TABLE_PARTITION_KEY}}}
        names, values = {"#v": "v"}, {":one": 1, ":v": int(entry.get("v", 0))}
        expression = "ADD #v :one"
        if counted:
            names["#c"] = "counted"
            values[":n"] = {tile_number(t["x"], t["y"], t["z"]) for t in counted}
            expression = "DELETE #c :n " + expression
        condition = "#v = :v" if "v" in entry else "attribute_not_exists(#v)"
        if "v" not in entry:
            del values[":v"]
        return {"Update": {"TableName": self.table, "Key": key, "UpdateExpression": expression,
                           "ConditionExpression": condition, "ExpressionAttributeNames": names,
                           "ExpressionAttributeValues": marshal(values)}}

    def _pack_remove(self, job_id: str, pack: str, tiles: list[dict], item: dict) -> dict:
        """The transaction action that removes these tiles from their pack, on the condition that
        each is there with the status given (a tile that is not fails it), and the deliveries and
        provenances that none of the pack's other tiles refers to (``item``: the pack as read)."""
        names, values, conditions = {"#s": "s"}, {}, []
        for n, t in enumerate(tiles):
            names[f"#t{n}"] = tile_attribute(t["quadkey"])
            values[f":s{n}"] = t["status"]
            conditions.append(f"#t{n}.#s = :s{n}")
        removed = [f"#t{n}" for n in range(len(tiles))]
        for n, name in enumerate(unreferenced(item, {tile_attribute(t["quadkey"]) for t in tiles})):
            names[f"#o{n}"] = name
            removed.append(f"#o{n}")
        return {
            "Update": {
                "TableName": self.table,
                "Key": self._key(job_id, pack_sort_key(pack)),
                "UpdateExpression": "REMOVE " + ", ".join(removed),
                "ConditionExpression": " AND ".join(conditions),
                "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": marshal(values),
            }
        }
