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
