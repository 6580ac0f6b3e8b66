"""``retry`` cuts the tiles it enqueues again into work units and sizes their workers as the
enumerator did: units of the deployment's ``LG_TILES_PER_MESSAGE`` tiles and on a stack one
worker per its ``LG_TILES_PER_WORKER`` (both recorded on the job by the enumerator), not the
built-in defaults. Against moto: the real enumerator handler (launching through the project's
BatchLauncher on moto's Batch where a test needs workers), then the real retry."""

from __future__ import annotations

from conftest import SAMPLE_POLYGON, drain, enumerator_env_with, geojson_bytes
from test_batch_failures_recorded import StackOnMoto
from test_enumerator import store_of, upload_and_handle

from looking_glass.pipeline.retry import retry
from looking_glass.pipeline.workunits import parse_work_unit


def test_retry_sizes_its_batch_workers_with_the_deployments_tiles_per_worker(aws, batch_queue, monkeypatch):
    session, names, resources = aws
    with enumerator_env_with(monkeypatch, resources, LG_WORKER_LAUNCHER="batch", LG_BATCH_JOB_QUEUE=batch_queue.job_queue,
                             LG_BATCH_JOB_DEFINITION=batch_queue.job_definition, LG_TILES_PER_WORKER=2,
                             LG_MAX_WORKERS=50):
        job_id, _ = upload_and_handle(session, names, resources, "w.geojson", geojson_bytes(SAMPLE_POLYGON))
    job = store_of(session, names).get_job(job_id)
    tiles = int(job["tiles_total"])
    assert job["tiles_per_worker"] == 2 and job["workers"] == -(-tiles // 2) >= 2
    session.client("sqs").purge_queue(QueueUrl=resources.tile_queue_url)  # the first workers took the units and were lost

    out = retry(StackOnMoto(session, resources), job_id)
    assert out["tiles_missing"] == out["tiles_enqueued"] == tiles
    assert out["workers"].endswith(f"({job['workers']} worker(s))"), out["workers"]
    launched = out["workers"].split()[2]  # "Batch job ID (N worker(s))"
    described = session.client("batch").describe_jobs(jobs=[launched])["jobs"][0]
    assert described["jobQueue"] == batch_queue.job_queue
    assert described["arrayProperties"]["size"] == job["workers"]


def test_retry_cuts_work_units_of_the_deployments_tiles_per_message(aws, monkeypatch):
    session, names, resources = aws
    with enumerator_env_with(monkeypatch, resources, LG_TILES_PER_MESSAGE=2):
        job_id, _ = upload_and_handle(session, names, resources, "m.geojson", geojson_bytes(SAMPLE_POLYGON))
    job = store_of(session, names).get_job(job_id)
    tiles = int(job["tiles_total"])
    assert job["tiles_per_message"] == 2 and tiles > 2
    sqs = session.client("sqs")
    sqs.purge_queue(QueueUrl=resources.tile_queue_url)  # the first units were lost

    out = retry(StackOnMoto(session, resources, kind="embedded"), job_id)
    units = [parse_work_unit(m["Body"]) for m in drain(sqs, resources.tile_queue_url)]
    assert out["tiles_enqueued"] == sum(u.tile_count for u in units) == tiles
    assert out["work_units_enqueued"] == len(units) == -(-tiles // 2)
    assert all(u.tile_count <= 2 for u in units)


def test_retry_refuses_a_job_refused_before_it_was_enqueued_and_queues_nothing(aws, monkeypatch):
    """A job the enumerator refused (here: more tiles than LG_MAX_TILES_PER_JOB) has a record,
    FAILED, with ``tiles_total`` (the count it refused) and no ``messages_total``. `retry` re-read
    its AOI and enqueued every tile the cap had refused, for a job that stayed FAILED; it now
    refuses with the reason, and the queue stays empty."""
    import pytest

    from looking_glass.pipeline.jobs import JobError

    session, names, resources = aws
    with enumerator_env_with(monkeypatch, resources, LG_MAX_TILES_PER_JOB=2):
        job_id, _ = upload_and_handle(session, names, resources, "big.geojson", geojson_bytes(SAMPLE_POLYGON))
    job = store_of(session, names).get_job(job_id)
    assert job["status"] == "FAILED" and int(job["tiles_total"]) > 2 and "messages_total" not in job
    with pytest.raises(JobError, match=rf"job {job_id} was refused before its tiles were enqueued \(.+\): fix the AOI"):
        retry(StackOnMoto(session, resources, kind="embedded"), job_id)
    assert drain(session.client("sqs"), resources.tile_queue_url) == []
