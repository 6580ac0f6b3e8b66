"""The tile enumerator's Lambda handler, driven by real S3 event notifications from moto."""

import json

import pytest
from conftest import SAMPLE_POLYGON, drain, enumerator_env_with, geojson_bytes, queued

from looking_glass.local.embedded import LocalLambdaContext, load_enumerator_handler
from looking_glass.pipeline.enumerator import upload_aoi
from looking_glass.pipeline.store import FAILED, RUNNING, ResultsStore
from looking_glass.pipeline.workunits import parse_work_unit
from looking_glass.tiling.aoi import parse_aoi
from looking_glass.tiling.cover import count_tiles, tile_runs


@pytest.fixture
def enumerator_env(aws, monkeypatch):
    session, names, resources = aws
    with enumerator_env_with(monkeypatch, resources, LG_TILES_PER_MESSAGE=10, LG_TILES_PER_WORKER=25,
                             LG_MAX_WORKERS=3) as launcher:
        yield session, names, resources, launcher


def upload_and_handle(session, names, resources, filename, data, imagery_digest=""):
    """Upload like a user, then hand moto's S3 notification to the real Lambda handler; the id
    returned is the one the upload computes for a source of ``imagery_digest``."""
    sqs = session.client("sqs")
    job_id = upload_aoi(session.client("s3"), resources.trigger_bucket, filename, data, imagery_digest)
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
        (geojson_bytes({"type": "FeatureCollection", "features": []}), "AOI has no features"),
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


# ---- issue 16: every input users send, handled, bounded, explained ------------------------------
from conftest import TESTS_DIR  # noqa: E402

CASES = TESTS_DIR / "data" / "cases"


def test_comb_aois_are_refused_by_tile_count_in_bounded_time_and_memory(enumerator_env):
    """tests/data/cases/aoi-comb: a few hundred bytes whose edges cross most tile rows; the cap
    is checked from cheap bounds before any cover runs."""
    import time
    import tracemalloc

    session, names, resources, launcher = enumerator_env
    for path in sorted((CASES / "aoi-comb").glob("*.geojson")):
        tracemalloc.start()
        t0 = time.monotonic()
        job_id, _ = upload_and_handle(session, names, resources, path.name, path.read_bytes())
        elapsed, (_, peak) = time.monotonic() - t0, tracemalloc.get_traced_memory()
        tracemalloc.stop()
        job = store_of(session, names).get_job(job_id)
        assert job["status"] == FAILED and "tiles, above the cap of" in job["reason"], job
        assert int(job["tiles_total"]) > 5_000_000
        assert elapsed < 10 and peak < 100 * 2**20, (path.name, elapsed, peak)
    assert launcher.calls == [] and queued(session.client("sqs"), resources.tile_queue_url) == 0


@pytest.mark.parametrize(
    "data, reason",
    [
        ((CASES / "aoi-odd-json" / "int400.geojson").read_bytes(), "too large"),
        ((CASES / "aoi-odd-json" / "type_is_list.geojson").read_bytes(), "type must be a string"),
        (b'{"type": "Polygon", "coordinates": [[[1' + b"0" * 5000 + b', 0]]]}', "not usable JSON"),
        (b'{"type": "GeometryCollection", "geometries": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested too deeply"),
        (geojson_bytes({"type": "Polygon", "coordinates": {"a": 1}}), "coordinates"),
        (geojson_bytes({"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, "x"], [0, 0]]]}}), "non-numeric"),
        (geojson_bytes({"type": "FeatureCollection", "features": {"type": "Feature"}}), "features must be a list"),
        (geojson_bytes([1, 2, 3]), "not a GeoJSON object"),
        (geojson_bytes({"type": {"Polygon": 1}}), "type must be a string"),
    ],
)
def test_malformed_json_of_every_kind_is_a_failed_job_with_a_reason(enumerator_env, data, reason):
    """tests/data/cases/aoi-odd-json and more of the kind: never a traceback out of the handler."""
    session, names, resources, launcher = enumerator_env
    job_id, _ = upload_and_handle(session, names, resources, "odd.geojson", data)
    job = store_of(session, names).get_job(job_id)
    assert job["status"] == FAILED and reason in job["reason"], job
    assert launcher.calls == []


@pytest.mark.parametrize("name", sorted(p.name for p in (CASES / "aoi-empty-coordinates").glob("*.geojson")))
def test_empty_coordinates_are_read_as_null_geometries(enumerator_env, name):
    """tests/data/cases/aoi-empty-coordinates: null, Polygon [], Polygon [[]], MultiPolygon []."""
    session, names, resources, _ = enumerator_env
    job_id, _ = upload_and_handle(session, names, resources, name, (CASES / "aoi-empty-coordinates" / name).read_bytes())
    job = store_of(session, names).get_job(job_id)
    assert job["status"] == RUNNING and int(job["tiles_total"]) == 6, job
    assert len(job["warnings"]) == 1 and "'broken'" in job["warnings"][0] and "geometry" in job["warnings"][0]


def test_the_job_record_always_fits_names_and_warnings_capped(enumerator_env):
    session, names, resources, _ = enumerator_env
    features = [{"type": "Feature", "properties": {"name": "p" * 500}, "geometry": {"type": "Point", "coordinates": [30, -2]}}
                for _ in range(3000)]
    features.append({"type": "Feature", "properties": {}, "geometry": SAMPLE_POLYGON})
    doc = {"type": "FeatureCollection", "name": "n" * 300_000, "features": features}
    job_id, _ = upload_and_handle(session, names, resources, "big-record.geojson", geojson_bytes(doc))
    job = store_of(session, names).get_job(job_id)
    assert job["status"] == RUNNING, job
    assert len(job["name"]) <= 200 and len(job["warnings"]) == 21
    assert "2980 more warning(s)" in job["warnings"][-1]


def test_the_control_character_name_is_stored_as_given(enumerator_env):
    """tests/data/cases/aoi-control-characters: stored as given (shown escaped by the CLI)."""
    session, names, resources, _ = enumerator_env
    data = (CASES / "aoi-control-characters" / "escape_name.geojson").read_bytes()
    job_id, _ = upload_and_handle(session, names, resources, "escape.geojson", data)
    job = store_of(session, names).get_job(job_id)
    assert job["name"] == json.loads(data)["properties"]["name"] and job["status"] == RUNNING


def test_the_aoi_read_is_the_one_the_event_announced(enumerator_env):
    """An AOI uploaded again under the same key before the first event is handled: the first job
    reads its own upload (the version, or else the ETag, from the event), not the new one."""
    session, names, resources, _ = enumerator_env
    s3, sqs = session.client("s3"), session.client("sqs")
    events_url = sqs.get_queue_url(QueueName=names.aoi_events_queue)["QueueUrl"]
    first = geojson_bytes(SAMPLE_POLYGON)
    small = {"type": "Polygon", "coordinates": [[[30.0600, -1.9500], [30.0605, -1.9500], [30.0605, -1.9495], [30.0600, -1.9495], [30.0600, -1.9500]]]}
    job_a = upload_aoi(s3, resources.trigger_bucket, "same.geojson", first)
    job_b = upload_aoi(s3, resources.trigger_bucket, "same.geojson", geojson_bytes(small))
    events = [json.loads(m["Body"]) for m in drain(sqs, events_url, wait=1)]
    events = [e for e in events if "Records" in e]
    assert len(events) == 2
    handler = load_enumerator_handler()
    for event in events:
        handler(event, LocalLambdaContext(aws_request_id="pin"))
    store = store_of(session, names)
    a, b = store.get_job(job_a), store.get_job(job_b)
    assert int(a["tiles_total"]) == count_tiles(tile_runs(parse_aoi(first).geometry, 18))
    assert int(b["tiles_total"]) == count_tiles(tile_runs(parse_aoi(geojson_bytes(small)).geometry, 18))
    assert a["tiles_total"] != b["tiles_total"]


def test_an_unversioned_aoi_replaced_after_its_event_fails_with_the_reason(enumerator_env):
    """Without a version in the event, the ETag pins the object (S3 IfMatch)."""
    session, names, resources, _ = enumerator_env
    s3 = session.client("s3")
    s3.put_object(Bucket=resources.trigger_bucket, Key="aoi/etag.geojson", Body=geojson_bytes(SAMPLE_POLYGON))
    event = {"Records": [{"s3": {"bucket": {"name": resources.trigger_bucket},
                                 "object": {"key": "aoi/etag.geojson", "eTag": "0123456789abcdef0123456789abcdef"}}}]}
    result = load_enumerator_handler()(event, LocalLambdaContext(aws_request_id="etag"))
    assert result["jobs"][0]["status"] == FAILED and "replaced" in result["jobs"][0]["reason"]


def test_the_embedded_event_queue_has_a_redrive_limit(enumerator_env):
    from looking_glass.runtime.resources import AOI_EVENTS_MAX_RECEIVE_COUNT

    session, names, _, _ = enumerator_env
    sqs = session.client("sqs")
    url = sqs.get_queue_url(QueueName=names.aoi_events_queue)["QueueUrl"]
    policy = json.loads(sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["RedrivePolicy"])["Attributes"]["RedrivePolicy"])
    assert int(policy["maxReceiveCount"]) == AOI_EVENTS_MAX_RECEIVE_COUNT <= 5
    assert policy["deadLetterTargetArn"].endswith(f"{names.aoi_events_queue}-dlq")
