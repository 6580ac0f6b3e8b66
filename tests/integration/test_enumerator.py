"""The tile enumerator's Lambda handler, driven by real S3 event notifications from moto."""

import json

import pytest

from conftest import SAMPLE_POLYGON, drain, geojson_bytes, queued
from looking_glass.tiling.cover import count_tiles, tile_runs
from looking_glass.local.embedded import LocalLambdaContext, load_enumerator_handler
from looking_glass.pipeline.enumerator import upload_aoi
from looking_glass.pipeline.launchers import register_local_launcher
from looking_glass.tiling.aoi import parse_aoi
from looking_glass.pipeline.store import FAILED, RUNNING, ResultsStore
from looking_glass.pipeline.workunits import parse_work_unit


class RecordingLauncher:
    """Stands in for worker processes: these tests are about the enumerator alone."""

    def __init__(self):
        self.calls = []

    def launch(self, job_id, workers):
        self.calls.append((job_id, workers))
        return f"recorded-{len(self.calls)}"


@pytest.fixture
def enumerator_env(aws, monkeypatch):
    session, names, resources = aws
    for key, value in resources.to_env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("LG_WORKER_LAUNCHER", "local")
    monkeypatch.setenv("LG_TILES_PER_MESSAGE", "10")
    monkeypatch.setenv("LG_TILES_PER_WORKER", "25")
    monkeypatch.setenv("LG_MAX_WORKERS", "3")
    launcher = RecordingLauncher()
    register_local_launcher(launcher)
    yield session, names, resources, launcher
    register_local_launcher(None)


def upload_and_handle(session, names, resources, filename, data):
    """Upload like a user, then hand moto's S3 notification to the real Lambda handler."""
    sqs = session.client("sqs")
    job_id = upload_aoi(session.client("s3"), resources.trigger_bucket, filename, data)
    events_url = sqs.get_queue_url(QueueName=names.aoi_events_queue)["QueueUrl"]
    handler = load_enumerator_handler()
    events = [json.loads(m["Body"]) for m in drain(sqs, events_url, wait=1)]
    s3_events = [e for e in events if "Records" in e]
    assert s3_events, "moto delivered no S3 notification"
    for event in s3_events:
        handler(event, LocalLambdaContext(aws_request_id="test"))
    return job_id, s3_events


def store_of(session, names):
    return ResultsStore(session.client("dynamodb"), names.results_table)


def test_valid_aoi_enqueues_every_tile_once_and_launches_workers(enumerator_env):
    session, names, resources, launcher = enumerator_env
    data = geojson_bytes(SAMPLE_POLYGON)
    job_id, _ = upload_and_handle(session, names, resources, "small.geojson", data)
    expected = count_tiles(tile_runs(parse_aoi(data).geometry))

    job = store_of(session, names).get_job(job_id)
    assert job["status"] == RUNNING
    assert job["tiles_total"] == expected
    units = [parse_work_unit(m["Body"]) for m in drain(session.client("sqs"), resources.tile_queue_url)]
    tiles = [t for u in units for t in u.tiles()]
    assert len(tiles) == len(set(tiles)) == expected
    assert all(u.tile_count <= 10 for u in units)
    assert job["messages_total"] == len(units)
    assert launcher.calls == [(job_id, min(3, -(-expected // 25)))]


def test_duplicate_event_enqueues_nothing_twice(enumerator_env):
    session, names, resources, launcher = enumerator_env
    job_id, events = upload_and_handle(session, names, resources, "dup.geojson", geojson_bytes(SAMPLE_POLYGON))
    first = queued(session.client("sqs"), resources.tile_queue_url)
    assert first > 0
    handler = load_enumerator_handler()
    handler(events[0], LocalLambdaContext(aws_request_id="again"))  # at-least-once delivery
    assert queued(session.client("sqs"), resources.tile_queue_url) == first
    assert len(launcher.calls) == 1


def test_tile_cap_fails_the_job_with_count_and_cap(enumerator_env, monkeypatch):
    session, names, resources, launcher = enumerator_env
    monkeypatch.setenv("LG_MAX_TILES_PER_JOB", "5")
    job_id, _ = upload_and_handle(session, names, resources, "big.geojson", geojson_bytes(SAMPLE_POLYGON))
    job = store_of(session, names).get_job(job_id)
    assert job["status"] == FAILED
    assert "above the cap of 5 tiles" in job["reason"] and str(job["tiles_total"]) in job["reason"]
    assert queued(session.client("sqs"), resources.tile_queue_url) == 0
    assert launcher.calls == []


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"{this is not json", "not valid JSON"),
        (b"\xff\xfe\xfa", "not UTF-8"),
        (geojson_bytes({"type": "Point", "coordinates": [30, -2]}), "no polygonal geometry"),
        (geojson_bytes({"type": "Polygon", "coordinates": [[[190, 0], [191, 0], [191, 1], [190, 0]]]}), "out of range"),
        (geojson_bytes({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [2, 0], [0, 0]]]}), "zero area"),
        (geojson_bytes({"type": "FeatureCollection", "features": []}), "no polygonal geometry"),
    ],
)
def test_bad_aoi_becomes_a_failed_job_and_enqueues_nothing(enumerator_env, data, reason):
    session, names, resources, launcher = enumerator_env
    job_id, events = upload_and_handle(session, names, resources, "bad.geojson", data)
    job = store_of(session, names).get_job(job_id)
    assert job["status"] == FAILED
    assert reason in job["reason"]
    assert queued(session.client("sqs"), resources.tile_queue_url) == 0
    assert launcher.calls == []
    # A redelivered event for the failed AOI changes nothing and does not raise.
    load_enumerator_handler()(events[0], LocalLambdaContext(aws_request_id="again"))
    assert store_of(session, names).get_job(job_id)["reason"] == job["reason"]


def test_only_geojson_under_the_trigger_prefix_notifies(enumerator_env):
    session, names, resources, _ = enumerator_env
    s3, sqs = session.client("s3"), session.client("sqs")
    events_url = sqs.get_queue_url(QueueName=names.aoi_events_queue)["QueueUrl"]
    drain(sqs, events_url)
    s3.put_object(Bucket=resources.trigger_bucket, Key="aoi/readme.txt", Body=b"x")
    s3.put_object(Bucket=resources.trigger_bucket, Key="elsewhere/a.geojson", Body=b"x")
    events = [json.loads(m["Body"]) for m in drain(sqs, events_url, wait=1)]
    assert [e for e in events if "Records" in e] == []


def test_missing_object_is_a_failed_job_not_an_exception(enumerator_env):
    session, names, resources, _ = enumerator_env
    event = {"Records": [{"s3": {"bucket": {"name": resources.trigger_bucket}, "object": {"key": "aoi/gone.geojson", "eTag": "abc"}}}]}
    result = load_enumerator_handler()(event, LocalLambdaContext(aws_request_id="x"))
    assert result["jobs"][0]["status"] == FAILED
    assert "cannot be read" in result["jobs"][0]["reason"]
