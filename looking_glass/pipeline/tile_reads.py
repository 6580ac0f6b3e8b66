"""Reading a job's tile results by quadkey range, from its packs and from older per-tile items.

Tiles live in packs (``looking_glass.pipeline.packs``, ``pack#<quadkey[:-3]>``), so a quadkey
range is a range of packs, each read whole and filtered to the tiles asked for; tables written
before the packs hold one ``tile#<quadkey>`` item per tile, read by the same range. Both are
merged in quadkey order (a tile in both: its pack is the newer, and wins). A prefix longer than
a pack's key (a tile's quadkey less 3 digits) lies inside one pack: when no pack lies under the
prefix, the packs whose key is the prefix less 1 to 3 digits are read (a job's tiles are of one
zoom, so under-prefix packs and enclosing ones never both hold tiles); likewise a range whose
start is longer than the tiles' quadkeys reads the pack that is start's prefix with the later
packs the range query finds (that pack sorts before the range). Every read is a query or
a BatchGetItem, never a scan; the tile items are exactly those the per-tile items were (keys,
values, Decimal numbers). The per-tile items are looked for only in jobs whose record does not
say ``tile_layout`` = ``packs`` (created before the packs; ``ledger.TILE_LAYOUT``): a job's
layout is read once per store (half a read unit, nothing when ``get_job`` has read the record),
where each range's query for per-tile items would cost half a unit each time.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator

from looking_glass.pipeline.ledger import TILE_LAYOUT, TILE_LAYOUT_ATTRIBUTE
from looking_glass.pipeline.packs import pack_sort_key, unpack
from looking_glass.pipeline.table import marshal, unmarshal
from looking_glass.runtime.resources import PACK_SORT_PREFIX, TABLE_PARTITION_KEY, TABLE_SORT_KEY, TILE_SORT_PREFIX

_PACKED, _LEGACY = 0, 1  # merge order for a tile in both: its pack first, and kept


class TileReads:
    """The tile-reading half of ``ResultsStore``: expects ``self.ddb``, ``self.table``,
    ``self._key(job_id, sort_key)``, ``self._job_key(job_id)``, ``self._batch_get`` and
    ``self._packs_only`` (a dict, job id to whether its record says its tiles are all in packs)."""

    def note_layout(self, job: dict) -> None:
        """Remember from ``job`` (a job record as read) whether its tiles are all in packs: its
        ``tile_layout`` is written with the record and never changes."""
        self._packs_only[str(job[TABLE_PARTITION_KEY])] = job.get(TILE_LAYOUT_ATTRIBUTE) == TILE_LAYOUT

    def _may_have_legacy(self, job_id: str) -> bool:
        """Whether the job may have per-tile items (``tile#<quadkey>``): not when its record says
        ``tile_layout`` = ``packs``. The record is read (its key and layout, eventually
        consistent) once per store; a job without a record yet is read both ways."""
        if job_id not in self._packs_only:
            found = self._batch_get([self._job_key(job_id)], "#pk, #l",
                                    {"#pk": TABLE_PARTITION_KEY, "#l": TILE_LAYOUT_ATTRIBUTE}, consistent=False)
            if not found:
                return True
            self.note_layout(found[0])
        return not self._packs_only[job_id]

    def _query(self, job_id: str, condition: str, values: dict, page: int | None = None,
               forward: bool = True) -> Iterator[dict]:
        """Items of one key-condition query on the job's partition (``:pk`` is set here), paged
        ``page`` items at a time if given (a small first page when one item may do)."""
        kwargs = {
            "TableName": self.table,
            "KeyConditionExpression": "#pk = :pk AND " + condition,
            "ExpressionAttributeNames": {"#pk": TABLE_PARTITION_KEY, "#sk": TABLE_SORT_KEY},
            "ExpressionAttributeValues": marshal({":pk": job_id, **values}),
            "ScanIndexForward": forward,
        }
        if page:
            kwargs["Limit"] = page
        while True:
            resp = self.ddb.query(**kwargs)
            for it in resp["Items"]:
                yield unmarshal(it)
            if "LastEvaluatedKey" not in resp:
                return
            kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]

    @staticmethod
    def _range(prefix: str, start: str, stop: str | None) -> tuple[str, dict]:
        """The key condition of the items under ``prefix`` whose quadkey is in [start, stop~]
        (``stop`` None: beginning with ``start``)."""
        if stop is None:
            return "begins_with(#sk, :lo)", {":lo": prefix + start}
        # "~" sorts after every quadkey digit, so the range includes stop's descendants.
        return "#sk BETWEEN :lo AND :hi", {":lo": prefix + start, ":hi": prefix + stop + "~"}

    def _packed_tiles(self, job_id: str, start: str, stop: str | None, page: int | None) -> Iterator[dict]:
        """Tiles of the packs that may hold quadkeys in the range, in quadkey order (unfiltered)."""
        # A tile K + 3 digits is >= start only if K >= start less 3 digits; for a prefix, K
        # begins with it unless K is shorter (the enclosing packs below).
        lo = start if stop is None else start[: max(0, len(start) - 3)]
        condition, values = self._range(PACK_SORT_PREFIX, lo, stop)
        packs = self._query(job_id, condition, values, page)
        first = next(packs, None)
        if first is not None:
            # A start longer than the tiles' quadkeys (a 19-digit start for zoom-18 tiles) gives a ``lo`` longer than the packs' keys: the pack that is start's prefix
            # sorts before ``lo`` and may hold tiles after start. It is the only such pack (a
            # job's packs are of one length) and its tiles come before the later packs'.
            length = len(first[TABLE_SORT_KEY]) - len(PACK_SORT_PREFIX)
            if stop is not None and length < len(lo):
                for pack in self._batch_get([self._key(job_id, pack_sort_key(start[:length]))], consistent=False):
                    yield from unpack(pack)
            yield from unpack(first)
            for pack in packs:
                yield from unpack(pack)
            return
        lengths = range(max(0, len(start) - 3), len(start)) if stop is None else range(max(0, len(start) - 3))
        keys = [self._key(job_id, pack_sort_key(start[:k])) for k in lengths]
        enclosing = self._batch_get(keys, consistent=False) if keys else []
        yield from sorted((it for pack in enclosing for it in unpack(pack)), key=lambda it: it["quadkey"])

    def _tiles(self, job_id: str, start: str = "", stop: str | None = None, page: int | None = None) -> Iterator[dict]:
        """Every tile item in the range (quadkey order), from packs and per-tile items."""
        if stop is None:
            def keep(qk: str) -> bool:
                return qk.startswith(start)
        else:
            def keep(qk: str) -> bool:
                return start <= qk <= stop + "~"
        packed = ((it["quadkey"], _PACKED, it) for it in self._packed_tiles(job_id, start, stop, page))
        condition, values = self._range(TILE_SORT_PREFIX, start, stop)
        per_tile = self._query(job_id, condition, values, page) if self._may_have_legacy(job_id) else iter(())
        legacy = ((it[TABLE_SORT_KEY][len(TILE_SORT_PREFIX) :], _LEGACY, it) for it in per_tile)
        last = None
        for qk, _, item in heapq.merge(packed, legacy, key=lambda t: t[:2]):
            if qk != last and keep(qk):
                yield item
            last = qk

    # ---- the reading API -----------------------------------------------------------------
    def tile_items(self, job_id: str, quadkey_prefix: str = "") -> list[dict]:
        """All tile items of a job (optionally under a quadkey prefix), in quadkey order, by
        key-range queries."""
        return list(self._tiles(job_id, quadkey_prefix))

    def query_tiles(self, job_id: str, start: str = "", stop: str | None = None,
                    attributes: tuple[str, ...] | None = None) -> Iterator[dict]:
        """Yield the tile items of a job whose quadkey is in [``start``, ``stop``] (both quadkey
        strings, ``stop``'s descendants included; ``stop`` None means every quadkey beginning
        with ``start``), in quadkey order, with only ``attributes`` (those the tile has) if
        given. Key-range queries, paged; never a scan."""
        for item in self._tiles(job_id, start, stop):
            yield {a: item[a] for a in attributes if a in item} if attributes else item

    def has_tiles(self, job_id: str, quadkey_prefix: str) -> bool:
        """Whether the job has a tile whose quadkey begins with ``quadkey_prefix`` (queries one
        item at a time, stopping at the first tile)."""
        return next(self._tiles(job_id, quadkey_prefix, page=1), None) is not None

    def quadkey_extent(self, job_id: str) -> tuple[str, str] | None:
        """The first and last quadkey of a job's tiles, or None when it has none (queries one
        item at a time from each end)."""
        first = next(self._tiles(job_id, page=1), None)
        if first is None:
            return None
        legacy = None
        if self._may_have_legacy(job_id):
            legacy = next(self._query(job_id, "begins_with(#sk, :lo)", {":lo": TILE_SORT_PREFIX}, 1, False), None)
        last = [legacy["quadkey"]] if legacy else []
        for pack in self._query(job_id, "begins_with(#sk, :lo)", {":lo": PACK_SORT_PREFIX}, 1, False):
            tiles = [it["quadkey"] for it in unpack(pack)]
            if tiles:  # a pack whose tiles were all retried is empty
                last.append(tiles[-1])
                break
        return first["quadkey"], max(last)
