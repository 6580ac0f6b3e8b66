"""Tile packs on a real moto server: writers sharing a pack, retries of part of a pack, tables
written before the packs (one item per tile), and the reading API over both."""

from __future__ import annotations

import json
import threading
from decimal import Decimal

import pytest

from looking_glass.grid import quadkey
from looking_glass.imagery.status import TILE_DONE, TILE_FAILED
from looking_glass.pipeline.packs import pack_of
from looking_glass.pipeline.store import RUNNING, ResultsStore, TileResult
from looking_glass.pipeline.table import area_decimal, fraction_decimal, marshal, unmarshal

JOB, OLD = "feedfacefeedfacefeedface", "0123456789abcdef01234567"
PROV = {"model_id": "m", "model_version": "3", "imagery": "http://x/{z}/{x}/{y}.png", "threshold": Decimal("0.5"),
        "zoom": 18, "processed_at": "2026-11-30T12:00:00+00:00"}
X0, Y0 = 152_024, 131_472  # a pack's north-west tile (both multiples of 8)


@pytest.fixture
def store(aws):
    session, names, _ = aws
    return ResultsStore(session.client("dynamodb"), names.results_table)


def tile(dx, dy, unit="u1", status=TILE_DONE):
    x, y = X0 + dx, Y0 + dy
    done = status == TILE_DONE
    return TileResult(x, y, 18, quadkey(x, y, 18), status, area_decimal(dx * 1.5 + dy) if done else Decimal(0),
                      building_pixels=dx + dy if done else 0, reason=None if done else "HTTP 500",
                      mask_key=f"masks/{JOB}/{unit}.npz" if done else None, unit=unit,
                      valid_fraction=fraction_decimal(0.75) if done else None, capture_date="2023-05-05",
                      building_count=dx if done else None)


def row_units(rows, width=16):
    """One unit per row, ``width`` tiles wide: 8-wide packs, so each row is in width/8 packs and
    each pack is written by one unit per row (as the enumerator's row runs are)."""
    return {f"u{dy}": [tile(dx, dy, f"u{dy}") for dx in range(width)] for dy in range(rows)}


def old_worker(store):
    """A store that writes tiles as workers before the packs did: one item per tile, with the
    same ledger transaction."""
    old = ResultsStore(store.ddb, store.table)
    old._write_packs = lambda job_id, items: old._batch_put(items)
    return old


def old_job(store, job, total):
    """A job record as enumerators before the packs wrote it: without ``tile_layout``."""
    store.create_job(job, {"status": RUNNING, "tiles_total": total})
    store.ddb.update_item(TableName=store.table, Key={"job_id": {"S": job}, "sort_key": {"S": "job"}},
                          UpdateExpression="REMOVE tile_layout")


def counters(store, job):
    job = store.get_job(job)
    return job["tiles_final"], job["tiles_done"], job["tiles_failed"], job["building_area_m2"]


def test_units_sharing_packs_written_at_once_lose_no_tile(aws, store):
    """8 units (one per row, 16 tiles: 2 packs each) stored by 8 threads released together, each
    with its own client: every pack is written by all 8 at about the same moment. Nothing lost,
    every tile counted once; a whole-item Put of the pack would have kept one unit's row."""
    session, names, _ = aws
    units = row_units(8)
    store.create_job(JOB, {"status": RUNNING, "tiles_total": 128})
    barrier = threading.Barrier(len(units))
    counted, errors = [], []

    def worker(results):
        mine = ResultsStore(session.client("dynamodb"), names.results_table)
        try:
            barrier.wait()
            counted.append(mine.record_tiles(JOB, results, PROV))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(r,)) for r in units.values()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and sorted(counted) == [16] * 8
    expected = [r.item(JOB, PROV) for rs in units.values() for r in rs]
    items = store.tile_items(JOB)
    assert items == _plain(expected)
    assert len({pack_of(i["quadkey"]) for i in items}) == 2
    assert store.final_quadkeys(JOB, [i["quadkey"] for i in expected]) == {i["quadkey"] for i in expected}
    area = sum(r.building_area_m2 for rs in units.values() for r in rs)
    assert counters(store, JOB) == (128, 128, 0, area)


def test_two_workers_on_one_unit_at_once_count_it_once(aws, store):
    session, names, _ = aws
    results = row_units(1, width=64)["u0"]
    store.create_job(JOB, {"status": RUNNING, "tiles_total": 64})
    barrier, counted = threading.Barrier(2), []

    def worker():
        mine = ResultsStore(session.client("dynamodb"), names.results_table)
        barrier.wait()
        counted.append(mine.record_tiles(JOB, results, PROV))

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(counted) == [0, 64]
    assert counters(store, JOB)[0] == 64 and len(store.tile_items(JOB)) == 64


def test_a_retry_of_some_tiles_of_a_pack_leaves_the_others(store):
    results = [tile(dx, 0) for dx in range(6)] + [tile(dx, 0, status=TILE_FAILED) for dx in range(6, 8)]
    store.create_job(JOB, {"status": RUNNING, "tiles_total": 8})
    assert store.record_tiles(JOB, results, PROV) == 8
    items = {i["quadkey"]: i for i in store.query_tiles(JOB, attributes=("quadkey", "x", "y", "z", "status",
                                                                         "building_area_m2", "unit"))}
    failed = [items[r.quadkey] for r in results[6:]]
    stale = {**items[results[0].quadkey], "status": TILE_FAILED}  # changed since it was read: kept
    assert store.forget_tiles(JOB, failed + [stale]) == 2
    kept = sum(r.building_area_m2 for r in results[:6])
    assert counters(store, JOB) == (6, 6, 0, kept)
    assert [i["quadkey"] for i in store.tile_items(JOB)] == [r.quadkey for r in results[:6]]
    assert store.final_quadkeys(JOB, [r.quadkey for r in results]) == {r.quadkey for r in results[:6]}
    redone = [tile(dx, 0, unit="retry") for dx in (6, 7)]
    assert store.record_tiles(JOB, redone, PROV) == 2
    assert counters(store, JOB) == (8, 8, 0, kept + sum(r.building_area_m2 for r in redone))
    assert store.record_tiles(JOB, redone, PROV) == 0


def test_a_pack_written_before_a_crash_is_not_final_and_is_counted_when_done_again(store):
    results = [tile(dx, 0) for dx in range(4)]
    store.create_job(JOB, {"status": RUNNING, "tiles_total": 4})
    store._write_packs(JOB, [r.item(JOB, PROV) for r in results])  # the write before the crash
    assert len(store.tile_items(JOB)) == 4 and store.final_quadkeys(JOB, [r.quadkey for r in results]) == set()
    assert store.record_tiles(JOB, results, PROV) == 4
    assert counters(store, JOB)[0] == 4


def test_a_table_written_before_the_packs_is_read_and_retried(store):
    """Tiles as items of their own, counted by an old worker: read exactly as written, final,
    retried (their items deleted), redone into packs, read merged; a tile both as an uncounted
    old item (its worker crashed) and in its pack reads as its pack's."""
    results = [tile(dx, dy, f"u{dy}") for dy in range(2) for dx in range(8)]
    results[3] = tile(3, 0, status=TILE_FAILED)
    old_job(store, OLD, 16)
    old = old_worker(store)
    assert old.record_tiles(OLD, results, PROV) == 16
    assert not any(k.startswith("pack#") for k in _sort_keys(store, OLD))
    assert store.tile_items(OLD) == _plain(r.item(OLD, PROV) for r in results)
    assert store.final_quadkeys(OLD, [r.quadkey for r in results]) == {r.quadkey for r in results}
    failed = [i for i in store.query_tiles(OLD) if i["status"] == TILE_FAILED]
    assert store.forget_tiles(OLD, failed) == 1
    assert len(store.tile_items(OLD)) == 15 and counters(store, OLD)[0] == 15
    assert store.record_tiles(OLD, [tile(3, 0)], PROV) == 1
    assert store.tile_items(OLD) == _plain(r.item(OLD, PROV) for r in [tile(3, 0) if r.quadkey == results[3].quadkey
                                                                        else r for r in results])
    assert counters(store, OLD)[:3] == (16, 16, 0)
    # An old worker's item that was never counted, then the tile done again into its pack.
    crashed = tile(0, 5, "u5")
    old._batch_put([{**crashed.item(OLD, PROV), "status": TILE_FAILED}])
    assert store.final_quadkeys(OLD, [crashed.quadkey]) == set()
    assert store.record_tiles(OLD, [crashed], PROV) == 1
    assert [i for i in store.tile_items(OLD) if i["quadkey"] == crashed.quadkey] == _plain([crashed.item(OLD, PROV)])
    both = [i for i in store.query_tiles(OLD, attributes=("quadkey", "x", "y", "z", "status", "building_area_m2", "unit"))
            if i["quadkey"] == crashed.quadkey]
    assert store.forget_tiles(OLD, both) == 1  # its pack's tile and the old item both go
    assert [i for i in store.tile_items(OLD) if i["quadkey"] == crashed.quadkey] == []


@pytest.mark.parametrize("layout", ["packs", "items"])
def test_the_reading_api_is_the_same_over_packs_and_per_tile_items(store, layout):
    """The same tiles stored in packs and as items of their own read the same by every range:
    prefixes shorter and longer than a pack's key, start/stop ranges, attributes, extents."""
    results = [tile(dx, dy, f"u{dy}") for dy in range(0, 16, 3) for dx in range(0, 20, 2)]
    writer = store if layout == "packs" else old_worker(store)
    (store.create_job(JOB, {"status": RUNNING, "tiles_total": len(results)}) if layout == "packs"
     else old_job(store, JOB, len(results)))
    assert store.final_quadkeys(JOB, [r.quadkey for r in results]) == set()
    writer.record_tiles(JOB, results, PROV)
    expected = _plain(r.item(JOB, PROV) for r in results)
    qks = [i["quadkey"] for i in expected]
    assert store.tile_items(JOB) == expected
    assert store.final_quadkeys(JOB, qks + [qks[0][:-1] + "9"]) == set(qks)
    for prefix in {qks[0][:n] for n in (10, 14, 15, 16, 17, 18)} | {qks[-1][:16], qks[7][:17], qks[7] + "0"}:
        assert store.tile_items(JOB, prefix) == [i for i in expected if i["quadkey"].startswith(prefix)], prefix
        assert store.has_tiles(JOB, prefix) == any(q.startswith(prefix) for q in qks), prefix
    for start, stop in [(qks[1], qks[9]), (qks[3][:16], qks[20][:15]), (qks[5], qks[5]), (qks[-1] + "1", None),
                        (qks[1] + "1", qks[9]), (qks[1] + "1", qks[-5]), (qks[1] + "1", None)]:
        want = [i for i in expected if start <= i["quadkey"] <= (stop or "") + "~"] if stop else \
            [i for i in expected if i["quadkey"].startswith(start)]
        # Each range holds tiles; those from a start longer than the tiles' zoom (19 digits) hold
        # tiles of start's own pack, with later packs in the range or without.
        assert want or not stop, (start, stop)
        assert list(store.query_tiles(JOB, start, stop)) == want, (start, stop)
    assert list(store.query_tiles(JOB, qks[0][:15], attributes=("status", "reason", "unit"))) == [
        {k: i[k] for k in ("status", "reason", "unit") if k in i} for i in expected if i["quadkey"].startswith(qks[0][:15])]
    assert store.quadkey_extent(JOB) == (qks[0], qks[-1])
    assert store.quadkey_extent(OLD) is None and store.tile_items(OLD) == []


def test_readers_of_a_job_in_packs_send_no_query_for_per_tile_items(aws, store):
    """A job whose record says ``tile_layout`` = ``packs`` has no per-tile items: the readers ask
    for none (each such query was half a read unit for nothing), and read the record once per
    store (never when ``get_job`` read it). A job from before the packs is still read both ways."""
    results = [tile(dx, dy, f"u{dy}") for dy in range(2) for dx in range(16)]
    store.create_job(JOB, {"status": RUNNING, "tiles_total": len(results)})
    store.record_tiles(JOB, results, PROV)
    old_job(store, OLD, 1)
    old_worker(store).record_tiles(OLD, [tile(0, 0, "v1")], PROV)
    ddb = aws[0].client("dynamodb")
    sent = []
    ddb.meta.events.register("before-parameter-build.dynamodb",
                             lambda params, model, **_: sent.append((model.name, json.dumps(params, default=str))))
    qks = sorted(r.quadkey for r in results)

    def read_all(reader, job):
        return (reader.tile_items(job), list(reader.query_tiles(job, qks[1], qks[-2])), reader.has_tiles(job, qks[0][:16]),
                reader.quadkey_extent(job))

    reader = ResultsStore(ddb, store.table)
    assert read_all(reader, JOB)[0] == _plain(r.item(JOB, PROV) for r in results)
    queries = [p for op, p in sent if op == "Query"]
    assert queries and not any('"tile#' in p for p in queries)
    assert [op for op, p in sent if '"job"' in p] == ["BatchGetItem"]  # its layout, once

    sent.clear()
    second = ResultsStore(ddb, store.table)
    second.get_job(JOB)
    read_all(second, JOB)
    assert [op for op, p in sent if '"job"' in p] == ["GetItem"] and not any('"tile#' in p for _, p in sent)

    sent.clear()
    assert [i["quadkey"] for i in reader.tile_items(OLD)] == [tile(0, 0).quadkey]
    assert any(op == "Query" and '"tile#' in p for op, p in sent)


def _plain(items):
    """Items as the table gives them back (numbers as Decimal, absent values left out), in
    quadkey order."""
    return sorted((unmarshal(marshal(i)) for i in items), key=lambda i: i["quadkey"])


def _sort_keys(store, job):
    resp = store.ddb.query(TableName=store.table, KeyConditionExpression="job_id = :j",
                           ExpressionAttributeValues={":j": {"S": job}})
    return [i["sort_key"]["S"] for i in resp["Items"]]


def test_a_retry_of_a_tile_stored_but_never_counted_leaves_the_counters_and_the_job_completes(store):
    """A unit crashed between its pack write and its ledger transaction (and went to the
    dead-letter queue); retry removes its stored tiles without uncounting them, the redo counts
    them once, and the job completes. Taking them off the counters too would leave it one short
    for ever. Also a unit whose ledger counts one of its tiles and not its other."""
    store.create_job(JOB, {"status": RUNNING, "tiles_total": 6})
    assert store.record_tiles(JOB, [tile(dx, 0, "u0") for dx in range(3)], PROV) == 3
    assert store.record_tiles(JOB, [tile(3, 0, "u1", TILE_FAILED)], PROV) == 1
    # The crashes: written, never counted (u1's ledger exists, u2's does not).
    store._write_packs(JOB, [tile(4, 0, "u1", TILE_FAILED).item(JOB, PROV), tile(5, 0, "u2", TILE_FAILED).item(JOB, PROV)])
    before = counters(store, JOB)
    assert before[:3] == (4, 3, 1)
    redo = [i for i in store.query_tiles(JOB, attributes=("quadkey", "x", "y", "z", "status", "building_area_m2", "unit"))
            if i["status"] == TILE_FAILED]
    assert len(redo) == 3 and store.forget_tiles(JOB, redo) == 3
    assert counters(store, JOB) == (3, 3, 0, before[3])  # only tile 3, which u1 counted, came off
    assert len(store.tile_items(JOB)) == 3
    # The redo: tile 3 by a retry unit, the dead-lettered units 4 and 5 again.
    assert store.record_tiles(JOB, [tile(3, 0, "r1"), tile(4, 0, "u1"), tile(5, 0, "u2")], PROV) == 3
    assert counters(store, JOB)[:3] == (6, 6, 0)
    assert store.try_complete(JOB)


@pytest.mark.parametrize("ledger_existed", [True, False])
def test_a_tile_counted_while_retry_forgets_it_is_uncounted_after_all(store, ledger_existed):
    """Retry reads a stored tile's ledger as not counting it (at version 1, or not there yet);
    before retry's transaction a worker counts it. The ledger changed, so the transaction is
    cancelled and the tile is forgotten on its own, now uncounted too: the counters never count
    a tile that is not stored."""
    store.create_job(JOB, {"status": RUNNING, "tiles_total": 2})
    assert store.record_tiles(JOB, [tile(0, 0, "u1" if ledger_existed else "u0")], PROV) == 1
    crashed = tile(1, 0, "u1", TILE_FAILED)
    store._write_packs(JOB, [crashed.item(JOB, PROV)])
    read, raced = store._batch_get, []

    def racing_read(keys, projection=None, names=None, consistent=True):
        found = read(keys, projection, names, consistent)
        if projection == "#sk, #c, #v" and not raced:  # retry's read of the ledgers
            raced.append(store.record_tiles(JOB, [crashed], PROV))
        return found

    store._batch_get = racing_read
    redo = [i for i in store.query_tiles(JOB, attributes=("quadkey", "x", "y", "z", "status", "building_area_m2", "unit"))
            if i["status"] == TILE_FAILED]
    assert store.forget_tiles(JOB, redo) == 1 and raced == [1]
    assert counters(store, JOB)[:3] == (1, 1, 0) and len(store.tile_items(JOB)) == 1
    assert store.record_tiles(JOB, [tile(1, 0, "r1")], PROV) == 1 and store.try_complete(JOB)


def test_a_tile_retry_removes_while_its_worker_counts_is_written_again_before_it_is_counted(store):
    """A worker writes a tile into its pack; before its ledger transaction, retry (``--force``:
    the unit still in flight) removes the tile and moves the ledger's version, so the transaction
    is refused and the worker reads the ledger again. Its next attempt counts the tile, so it
    writes it again first: before, it skipped tiles it had written once, and counted a tile
    no longer stored, whose redo would then count it a second time."""
    store.create_job(JOB, {"status": RUNNING, "tiles_total": 2})
    assert store.record_tiles(JOB, [tile(0, 0, "u1")], PROV) == 1  # the ledger exists
    late = tile(1, 0, "u1", TILE_FAILED)
    transaction, raced = store._run_transaction, []

    def retry_first(job_id, actions):
        if not raced:  # retry, between this worker's pack write and its transaction
            stored = [i for i in store.query_tiles(JOB, attributes=("quadkey", "x", "y", "z", "status",
                                                                    "building_area_m2", "unit"))
                      if i["quadkey"] == late.quadkey]
            raced.append(ResultsStore(store.ddb, store.table).forget_tiles(JOB, stored))
        return transaction(job_id, actions)

    store._run_transaction = retry_first
    assert store.record_tiles(JOB, [late], PROV) == 1 and raced == [1]
    assert [i["status"] for i in store.tile_items(JOB)] == [TILE_DONE, TILE_FAILED]  # stored as counted
    assert store.final_quadkeys(JOB, [late.quadkey]) == {late.quadkey}  # so its redo skips it
    assert counters(store, JOB)[:3] == (2, 1, 1)


def _pack_ids(store, job, pack):
    """The delivery and provenance attributes of a pack, as stored."""
    item = store._batch_get([store._key(job, "pack#" + pack)])[0]
    return sorted(a for a in item if a[0] in "up" and len(a) == 13)


def test_a_pack_retried_again_and_again_keeps_only_the_deliveries_its_tiles_refer_to(store):
    """Each write of a unit adds its delivery to the pack (processed_at differs), and a tile
    written again or retried left the old one behind: a pack whose tile failed and was retried
    10 times grew by 10 deliveries (about 150 bytes each, billed on every later write of it).
    retry removes, with the tiles, the deliveries and provenances no remaining tile refers to."""
    store.create_job(JOB, {"status": RUNNING, "tiles_total": 3})
    assert store.record_tiles(JOB, [tile(0, 0, "u0"), tile(1, 0, "u0")], PROV) == 2
    store._write_packs(JOB, [tile(2, 0, "u1", TILE_FAILED).item(JOB, PROV)])  # a crash before counting
    assert store.record_tiles(JOB, [tile(2, 0, "u1", TILE_FAILED)], {**PROV, "processed_at": "2026-11-30T12:05:00+00:00"}) == 1
    pack = pack_of(tile(0, 0).quadkey)
    assert len(_pack_ids(store, JOB, pack)) == 4  # u0's, u1's twice (one orphaned by the redelivery), one provenance
    before = [i for i in store.tile_items(JOB) if i["status"] == TILE_DONE]
    for n in range(10):
        failed = [i for i in store.query_tiles(JOB, attributes=("quadkey", "x", "y", "z", "status", "building_area_m2", "unit"))
                  if i["status"] == TILE_FAILED]
        assert store.forget_tiles(JOB, failed) == 1
        assert store.record_tiles(JOB, [tile(2, 0, f"r{n}", TILE_FAILED)], PROV) == 1
    ids = _pack_ids(store, JOB, pack)
    assert len(ids) == 3  # u0's delivery, r9's, the provenance they share
    assert [i for i in store.tile_items(JOB) if i["status"] == TILE_DONE] == before  # the others untouched
    (last,) = [i for i in store.tile_items(JOB) if i["status"] == TILE_FAILED]
    assert last["unit"] == "r9" and last["model_id"] == PROV["model_id"]
    assert counters(store, JOB)[:3] == (3, 2, 1)
