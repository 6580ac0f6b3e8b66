"""The worker in-process against moto and the synthetic tile server, with a tiny real model."""

import socket

import numpy as np
import pytest
from conftest import queued

from looking_glass.pipeline.store import COMPLETE, RUNNING, ResultsStore
from looking_glass.pipeline.workunits import pack_runs
from looking_glass.runtime.settings import WorkerSettings

JOB = "abcabcabcabcabcabcabcabc"


@pytest.fixture(scope="module")
def tiny_segmenter():
    import keras

    from looking_glass.model.deeplab import ModelConfig, build_deeplabv3plus
    from looking_glass.model.segmenter import ModelInfo, Segmenter

    keras.utils.set_random_seed(1)
    model = build_deeplabv3plus(ModelConfig(alpha=0.35, aspp_filters=8, decoder_filters=8))
    return Segmenter(model, ModelInfo("tiny-test", "0", False, "random tiny model for tests"))


def settings_for(template, **overrides):
    values = dict(
        tile_url_template=template, model_path="", batch_size=8, threshold=0.5,
        download_concurrency=4, download_timeout_s=2.0, download_retries=0,
        write_masks=True, idle_exit_s=0.5, poll_wait_s=0,
    )
    values.update(overrides)
    return WorkerSettings(**values)


def start_job(session, names, resources, runs, per_message=8):
    store = ResultsStore(session.client("dynamodb"), names.results_table)
    total = int(sum(b - a for _, a, b in runs))
    store.create_job(JOB, {"status": RUNNING, "tiles_total": total})
    sqs = session.client("sqs")
    for unit in pack_runs(JOB, 18, np.array(runs), per_message):
        sqs.send_message(QueueUrl=resources.tile_queue_url, MessageBody=unit.to_json())
    return store, total


def run_worker(session, resources, settings, segmenter):
    from looking_glass.pipeline.worker import Worker

    return Worker(session, resources, settings, segmenter).run()


def test_every_tile_gets_one_result_and_the_job_completes(aws, tile_server, tiny_segmenter):
    session, names, resources = aws
    store, total = start_job(session, names, resources, [[132486, 152950, 152956], [132487, 152950, 152955]])
    stats = run_worker(session, resources, settings_for(tile_server.url_template), tiny_segmenter)

    items = store.tile_items(JOB)
    job = store.get_job(JOB)
    assert stats.tiles_new == total == len(items) == len({i["quadkey"] for i in items})
    assert job["status"] == COMPLETE and job["tiles_done"] == total
    assert job["building_area_m2"] == sum(i["building_area_m2"] for i in items)
    assert queued(session.client("sqs"), resources.tile_queue_url) == 0
    item = items[0]
    assert item["model_id"] == "tiny-test" and item["imagery"].startswith("http://127.0.0.1")
    # One result object per unit (two units, so two objects), each tile's mask read back from it
    # is the one whose area the item holds.
    from looking_glass.model.segmenter import building_area_m2
    from looking_glass.pipeline.store import area_decimal
    from looking_glass.results.masks import read_tile_mask

    s3 = session.client("s3")
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=resources.masks_bucket)["Contents"]}
    assert keys == {i["mask_key"] for i in items} and len(keys) == 2
    for i in items:
        mask = read_tile_mask(s3, resources.masks_bucket, i)
        assert mask.shape == (256, 256) and int(mask.sum()) == i["building_pixels"]
        assert area_decimal(building_area_m2(mask, int(i["x"]), int(i["y"]), int(i["z"]))) == i["building_area_m2"]


def test_redelivered_work_is_not_counted_twice(aws, tile_server, tiny_segmenter):
    session, names, resources = aws
    runs = [[132486, 152950, 152954]]
    store, total = start_job(session, names, resources, runs)
    # The same work unit delivered again (as SQS may): counters must not move twice.
    unit = next(pack_runs(JOB, 18, np.array(runs), 8))
    session.client("sqs").send_message(QueueUrl=resources.tile_queue_url, MessageBody=unit.to_json())
    run_worker(session, resources, settings_for(tile_server.url_template), tiny_segmenter)
    job = store.get_job(JOB)
    assert job["tiles_final"] == total == len(store.tile_items(JOB))


def test_missing_imagery_is_recorded_as_no_imagery_with_zero_area(aws, tile_server, tiny_segmenter):
    session, names, resources = aws
    store, total = start_job(session, names, resources, [[132486, 152950, 152953]])
    template = tile_server.url_template.replace("/{z}/", "/missing/{z}/")  # the server answers 404
    run_worker(session, resources, settings_for(template), tiny_segmenter)
    job = store.get_job(JOB)
    assert job["status"] == COMPLETE and job["tiles_no_imagery"] == total and job["building_area_m2"] == 0


def test_malformed_message_goes_to_the_dead_letter_queue_with_its_reason(aws, tile_server, tiny_segmenter):
    session, names, resources = aws
    sqs = session.client("sqs")
    sqs.send_message(QueueUrl=resources.tile_queue_url, MessageBody='{"v": 1, "job_id": "nope"}')
    stats = run_worker(session, resources, settings_for(tile_server.url_template), tiny_segmenter)
    assert stats.malformed == 1
    assert queued(sqs, resources.tile_queue_url) == 0
    dead = sqs.receive_message(QueueUrl=resources.tile_dlq_url, MessageAttributeNames=["All"])["Messages"]
    assert "invalid job_id" in dead[0]["MessageAttributes"]["reason"]["StringValue"]


def test_unreachable_imagery_leaves_the_message_for_redelivery(aws, tiny_segmenter):
    session, names, resources = aws
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    store, _ = start_job(session, names, resources, [[132486, 152950, 152952]])
    stats = run_worker(session, resources, settings_for(f"http://127.0.0.1:{port}/{{z}}/{{x}}/{{y}}.png"), tiny_segmenter)
    assert stats.transient == 1 and stats.tiles_new == 0
    assert queued(session.client("sqs"), resources.tile_queue_url) == 1  # not deleted
    assert store.get_job(JOB)["status"] == RUNNING


def test_an_unreachable_results_table_stops_the_worker_and_deletes_no_message(aws, tile_server, tiny_segmenter):
    """Storing runs on its own thread: its failure must still stop the worker with the error,
    and a unit whose results were not stored must stay in the queue for redelivery."""
    from dataclasses import replace

    from botocore.exceptions import ClientError

    session, names, resources = aws
    start_job(session, names, resources, [[132486, 152950, 152958]], per_message=4)
    sqs = session.client("sqs")
    before = queued(sqs, resources.tile_queue_url)
    broken = replace(resources, results_table="no-such-table")
    with pytest.raises(ClientError, match="ResourceNotFound|not found"):
        run_worker(session, broken, settings_for(tile_server.url_template), tiny_segmenter)
    assert before == 2 and queued(sqs, resources.tile_queue_url) == before


def test_a_failure_after_download_stops_the_worker_and_stores_nothing(aws, tile_server, tiny_segmenter):
    """Same for the inference stage (main thread) while the other stages run."""
    session, names, resources = aws
    store, _ = start_job(session, names, resources, [[132486, 152950, 152958]], per_message=4)

    class Broken:
        info = tiny_segmenter.info

        def predict_masks(self, images):
            raise RuntimeError("model exploded")

    with pytest.raises(RuntimeError, match="model exploded"):
        run_worker(session, resources, settings_for(tile_server.url_template), Broken())
    assert store.tile_items(JOB) == [] and queued(session.client("sqs"), resources.tile_queue_url) == 2


def test_results_for_a_job_without_a_job_record_go_to_the_dead_letter_queue(aws, tile_server, tiny_segmenter):
    """No phantom job records: a unit naming an unknown job is refused and dead-lettered."""
    session, names, resources = aws
    store = ResultsStore(session.client("dynamodb"), names.results_table)
    sqs = session.client("sqs")
    unit = next(pack_runs(JOB, 18, np.array([[132486, 152950, 152952]]), 8))  # JOB never created
    sqs.send_message(QueueUrl=resources.tile_queue_url, MessageBody=unit.to_json())
    run_worker(session, resources, settings_for(tile_server.url_template), tiny_segmenter)
    assert store.get_job(JOB) is None and store.tile_items(JOB) == []
    assert queued(sqs, resources.tile_queue_url) == 0
    dead = sqs.receive_message(QueueUrl=resources.tile_dlq_url, MessageAttributeNames=["All"])["Messages"]
    assert "has no job record" in dead[0]["MessageAttributes"]["reason"]["StringValue"]


def test_a_unit_kept_for_redelivery_comes_back_after_the_retry_delay(aws, tiny_segmenter):
    session, names, resources = aws
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start_job(session, names, resources, [[132486, 152950, 152952]])
    template = f"http://127.0.0.1:{port}/{{z}}/{{x}}/{{y}}.png"  # nobody listens: transient
    run_worker(session, resources, settings_for(template, retry_delay_s=1), tiny_segmenter)
    sqs = session.client("sqs")
    # The queue's visibility timeout is 600 s; the worker handed the unit back after 1 s.
    import time

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        got = sqs.receive_message(QueueUrl=resources.tile_queue_url, WaitTimeSeconds=1).get("Messages", [])
        if got:
            break
    assert got, "the unit did not come back within 10 s"


def visible(sqs, queue_url: str) -> int:
    attrs = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages"])
    return int(attrs["Attributes"]["ApproximateNumberOfMessages"])


def test_hostile_tiles_are_failed_and_the_rest_of_the_unit_is_stored(aws, fault_tiles, tiny_segmenter):
    """tests/data/cases/tiles-hostile: a corrupt chunk (Pillow raises SyntaxError) and a 45-byte
    decompression bomb, each the tile's ``failed`` status; the unit's other tiles are stored, the
    worker goes on to the next unit and the job completes."""
    from conftest import TESTS_DIR

    hostile = TESTS_DIR / "data" / "cases" / "tiles-hostile"
    session, names, resources = aws
    fault_tiles.set_fault(18, 152950, 132486, "bytes", body=(hostile / "truncated_chunk.png.bin").read_bytes())
    fault_tiles.set_fault(18, 152951, 132486, "bytes", body=(hostile / "bomb_20000x20000_rgba.png").read_bytes())
    store, total = start_job(session, names, resources, [[132486, 152950, 152954]], per_message=2)
    stats = run_worker(session, resources, settings_for(fault_tiles.url_template), tiny_segmenter)
    items = {(int(i["x"]), int(i["y"])): i for i in store.tile_items(JOB)}
    assert stats.messages == 2 and len(items) == total == 4
    corrupt, bomb = items[(152950, 132486)], items[(152951, 132486)]
    assert corrupt["status"] == "failed" and "not a decodable image" in corrupt["reason"]
    assert bomb["status"] == "failed" and bomb["reason"]
    assert sorted(i["status"] for i in items.values()) == ["done", "done", "failed", "failed"]
    assert store.get_job(JOB)["status"] == COMPLETE


def test_a_worker_stopping_on_an_error_hands_its_units_back_at_once(aws, tile_server, tiny_segmenter):
    """The unit being downloaded when the worker fails is visible again at once, not after its
    visibility timeout (the next worker need not wait)."""
    from dataclasses import replace

    from botocore.exceptions import ClientError

    session, names, resources = aws
    start_job(session, names, resources, [[132486, 152950, 152954]], per_message=4)
    sqs = session.client("sqs")
    broken = replace(resources, results_table="no-such-table")
    with pytest.raises(ClientError):
        run_worker(session, broken, settings_for(tile_server.url_template, visibility_timeout_s=600), tiny_segmenter)
    assert visible(sqs, resources.tile_queue_url) == 1


def test_each_done_tile_stores_its_building_count_from_its_mask(aws, tile_server, tiny_segmenter):
    from looking_glass.outlines.vectorize import building_count
    from looking_glass.results.masks import read_tile_mask

    session, names, resources = aws
    store, _ = start_job(session, names, resources, [[132486, 152950, 152954]])
    run_worker(session, resources, settings_for(tile_server.url_template), tiny_segmenter)
    s3 = session.client("s3")
    for item in store.tile_items(JOB):
        mask = read_tile_mask(s3, resources.masks_bucket, item)
        assert item["building_count"] == building_count(mask, 18, int(item["x"]), int(item["y"]))
