"""``retry`` on a stack starts as many workers as the enumerator would for the tiles it
enqueues again: one per the deployment's ``LG_TILES_PER_WORKER`` (which the enumerator records on
the job), not one per the built-in default. Against moto: the real enumerator handler launching
through the project's BatchLauncher on moto's Batch, then the real retry."""

from __future__ import annotations

from conftest import SAMPLE_POLYGON, enumerator_env_with, geojson_bytes
from test_batch_failures_recorded import StackOnMoto, batch_queue  # noqa: F401 - a fixture
from test_enumerator import store_of, upload_and_handle

from looking_glass.pipeline.retry import retry


def test_retry_sizes_its_batch_workers_with_the_deployments_tiles_per_worker(aws, batch_queue, monkeypatch):  # noqa: F811
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
