"""The results table on a real moto server: idempotent job creation, exactly-once counters."""

from decimal import Decimal

import pytest

from looking_glass.imagery.status import TILE_DONE, TILE_FAILED, TILE_NO_IMAGERY
from looking_glass.pipeline.store import (
    COMPLETE,
    RUNNING,
    ResultsStore,
    TileResult,
    job_id_for,
)

JOB = "feedfacefeedfacefeedface"
PROV = {"model_id": "m", "model_version": "1", "imagery": "http://x/{z}/{x}/{y}.png"}


@pytest.fixture
def store(aws):
    session, names, _ = aws
    return ResultsStore(session.client("dynamodb"), names.results_table)


def result(i, status=TILE_DONE, area="10.5"):
    return TileResult(i, 7, 18, f"q{i:04d}", status, Decimal(area) if status == TILE_DONE else Decimal(0))


def test_job_id_is_deterministic_per_object_and_content():
    assert job_id_for("b", "aoi/x.geojson", '"abc"') == job_id_for("b", "aoi/x.geojson", "abc")
    assert job_id_for("b", "aoi/x.geojson", "abc") != job_id_for("b", "aoi/x.geojson", "abd")
    assert job_id_for("b", "aoi/x.geojson", "abc") != job_id_for("b", "aoi/y.geojson", "abc")


def test_create_job_is_idempotent(store):
    assert store.create_job(JOB, {"status": RUNNING, "tiles_total": 3})
    assert not store.create_job(JOB, {"status": RUNNING, "tiles_total": 99})
    assert store.get_job(JOB)["tiles_total"] == 3


def test_counters_move_once_per_tile_despite_redelivery(store):
    store.create_job(JOB, {"status": RUNNING, "tiles_total": 4})
    first = [result(0), result(1, TILE_FAILED)]
    assert store.record_tiles(JOB, first, PROV) == 2
    # Redelivery of the same tiles plus two new ones: only the new ones count.
    again = first + [result(2), result(3, TILE_NO_IMAGERY)]
    assert store.record_tiles(JOB, again, PROV) == 2
    job = store.get_job(JOB)
    assert (job["tiles_done"], job["tiles_failed"], job["tiles_no_imagery"], job["tiles_final"]) == (2, 1, 1, 4)
    assert job["building_area_m2"] == Decimal("21.000")
    items = store.tile_items(JOB)
    assert len(items) == 4
    assert sum(i["building_area_m2"] for i in items) == job["building_area_m2"]
    assert items[0]["model_id"] == "m"


def test_completion_happens_exactly_once_and_only_when_all_tiles_are_final(store):
    store.create_job(JOB, {"status": RUNNING, "tiles_total": 2})
    store.record_tiles(JOB, [result(0)], PROV)
    assert not store.try_complete(JOB)
    store.record_tiles(JOB, [result(1)], PROV)
    assert store.try_complete(JOB)
    assert not store.try_complete(JOB)
    job = store.get_job(JOB)
    assert job["status"] == COMPLETE and job["finished_at"]


def test_large_batches_span_several_transactions(store):
    store.create_job(JOB, {"status": RUNNING, "tiles_total": 250})
    assert store.record_tiles(JOB, [result(i) for i in range(250)], PROV) == 250
    assert store.get_job(JOB)["tiles_final"] == 250
    assert store.final_quadkeys(JOB, [f"q{i:04d}" for i in range(245, 255)]) == {f"q{i:04d}" for i in range(245, 250)}
    assert len(store.tile_items(JOB, quadkey_prefix="q00")) == 100


def test_results_for_a_job_that_does_not_exist_are_refused_and_create_nothing(store):
    from looking_glass.pipeline.store import UnknownJob

    with pytest.raises(UnknownJob, match="has no job record"):
        store.record_tiles(JOB, [result(0), result(1)], PROV)
    assert store.get_job(JOB) is None and store.tile_items(JOB) == []


# ---- the per-unit ledger (looking_glass.pipeline.ledger) -----------------------------------------


def unit_result(i, unit="u1", status=TILE_DONE, area="2.5"):
    return TileResult(i, 7, 18, f"q{i:04d}", status, Decimal(area) if status == TILE_DONE else Decimal(0), unit=unit)


def test_a_unit_counts_its_tiles_once_across_partial_deliveries(store):
    """A unit with tiles kept for redelivery: the tiles stored first, then the rest, then the
    whole unit again (as a worker whose skip check missed would): each tile counted once."""
    store.create_job(JOB, {"status": RUNNING, "tiles_total": 4})
    assert store.record_tiles(JOB, [unit_result(0), unit_result(1)], PROV) == 2
    assert store.final_quadkeys(JOB, ["q0000", "q0001", "q0002"]) == {"q0000", "q0001"}
    assert store.record_tiles(JOB, [unit_result(2), unit_result(3, status=TILE_FAILED)], PROV) == 2
    assert store.record_tiles(JOB, [unit_result(i) for i in range(4)], PROV) == 0
    job = store.get_job(JOB)
    assert (job["tiles_final"], job["tiles_done"], job["tiles_failed"]) == (4, 3, 1)
    assert job["building_area_m2"] == sum(i["building_area_m2"] for i in store.tile_items(JOB)) == Decimal("7.500")
    assert {i["unit"] for i in store.tile_items(JOB)} == {"u1"}


def test_an_item_written_but_not_counted_is_not_final_and_is_counted_when_done_again(store):
    """A crash between the item write and the ledger transaction: the item is there, uncounted,
    so the redelivery must not skip it; done again, it is counted once."""
    store.create_job(JOB, {"status": RUNNING, "tiles_total": 2})
    store._batch_put([unit_result(0).item(JOB, PROV)])  # the write that landed before the crash
    assert store.final_quadkeys(JOB, ["q0000"]) == set()
    assert store.get_job(JOB)["tiles_final"] == 0
    assert store.record_tiles(JOB, [unit_result(0), unit_result(1)], PROV) == 2
    assert store.final_quadkeys(JOB, ["q0000", "q0001"]) == {"q0000", "q0001"}
    assert store.get_job(JOB)["tiles_final"] == 2


def test_a_worker_that_read_the_ledger_before_another_counted_counts_nothing_twice(store):
    """Two workers on the same unit: the second read the ledger before the first's transaction;
    its transaction is refused (version moved), it reads again and counts nothing."""
    store.create_job(JOB, {"status": RUNNING, "tiles_total": 3})
    reads = []
    real_read = store._read_ledger

    def stale_once(job_id, ledger):
        if not reads:  # the first read: before the other worker's transaction
            reads.append(real_read(job_id, ledger))
            other = ResultsStore(store.ddb, store.table)
            assert other.record_tiles(JOB, [unit_result(i) for i in range(3)], PROV) == 3
            return reads[0]
        return real_read(job_id, ledger)

    store._read_ledger = stale_once
    assert store.record_tiles(JOB, [unit_result(i) for i in range(3)], PROV) == 0
    job = store.get_job(JOB)
    assert job["tiles_final"] == 3 and job["building_area_m2"] == Decimal("7.500")


def test_forgotten_tiles_leave_their_ledger_and_are_counted_again_when_redone(store):
    store.create_job(JOB, {"status": RUNNING, "tiles_total": 3})
    store.record_tiles(JOB, [unit_result(0), unit_result(1, status=TILE_FAILED), unit_result(2, unit="u2")], PROV)
    items = {i["quadkey"]: i for i in store.tile_items(JOB)}
    assert store.forget_tiles(JOB, [items["q0001"], items["q0002"]]) == 2
    job = store.get_job(JOB)
    assert (job["tiles_final"], job["tiles_failed"], job["building_area_m2"]) == (1, 0, Decimal("2.500"))
    assert store.final_quadkeys(JOB, ["q0000", "q0001", "q0002"]) == {"q0000"}
    # Redone by retry's new units (here the same unit ids): counted again, once.
    assert store.record_tiles(JOB, [unit_result(1), unit_result(2, unit="u2")], PROV) == 2
    assert store.get_job(JOB)["tiles_final"] == 3


def test_tile_items_go_in_packs_and_the_counters_in_one_transaction_per_unit(store):
    """64 tiles of one unit, all in one pack (their quadkeys share all but the last 3 digits): one
    UpdateItem of the pack and one TransactWriteItems, no PutItem and no per-tile write."""
    store.create_job(JOB, {"status": RUNNING, "tiles_total": 64})
    calls = []
    store.ddb.meta.events.register("before-call.dynamodb.*", lambda model, **_: calls.append(model.name))
    assert store.record_tiles(JOB, [unit_result(i) for i in range(64)], PROV) == 64
    assert sorted(calls) == ["BatchGetItem", "TransactWriteItems", "UpdateItem"]
