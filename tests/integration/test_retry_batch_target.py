"""On a stack ``retry`` submits its Batch workers to the stack's own job queue and current job
definition (its ``JobQueueArn`` and ``JobDefinitionArn`` outputs), not to those of the job's first
Batch job: after a redeploy the first job's definition revision is inactive, and Batch forgets old
jobs. Where it queued work but cannot start workers, it says the work is queued and gives the
``aws batch submit-job`` command that starts them (exit 1). Against moto's Batch: the real
enumerator handler launches the first workers through the project's BatchLauncher, then the real
retry (and ``looking-glass retry`` with the stack's deployment)."""

from __future__ import annotations

import json
import shlex
import uuid

import pytest
from conftest import SAMPLE_POLYGON, drain, enumerator_env_with, geojson_bytes
from test_batch_failures_recorded import StackOnMoto
from test_enumerator import store_of, upload_and_handle

import looking_glass.cli.jobs as cli_jobs
from looking_glass.cli.main import main as cli_main
from looking_glass.pipeline.retry import UNKNOWN_DEFINITION, UNKNOWN_QUEUE, WorkersNotStarted, retry
from looking_glass.pipeline.workunits import parse_work_unit
from looking_glass.runtime.resources import OUTPUT_JOB_DEFINITION, OUTPUT_JOB_QUEUE


def _job_with_lost_units(aws, batch_queue, monkeypatch) -> dict:
    """A job whose first workers the enumerator submitted to ``batch_queue`` (moto's Batch) and
    whose work units were then lost (the tile queue purged): every tile is for retry to redo."""
    session, names, resources = aws
    with enumerator_env_with(monkeypatch, resources, LG_WORKER_LAUNCHER="batch", LG_BATCH_JOB_QUEUE=batch_queue.job_queue,
                             LG_BATCH_JOB_DEFINITION=batch_queue.job_definition, LG_TILES_PER_WORKER=2,
                             LG_MAX_WORKERS=50):
        job_id, _ = upload_and_handle(session, names, resources, "t.geojson", geojson_bytes(SAMPLE_POLYGON))
    session.client("sqs").purge_queue(QueueUrl=resources.tile_queue_url)
    return store_of(session, names).get_job(job_id)


def _described(session, workers: str) -> dict:
    """The Batch job of retry's ``workers`` ("Batch job ID (N worker(s))")."""
    assert workers.startswith("Batch job "), workers
    return session.client("batch").describe_jobs(jobs=[workers.split()[2]])["jobs"][0]


def _queued_tiles(session, resources, job_id: str) -> int:
    units = [parse_work_unit(m["Body"]) for m in drain(session.client("sqs"), resources.tile_queue_url)]
    assert {u.job_id for u in units} == {job_id}
    return sum(u.tile_count for u in units)


def test_retry_after_a_redeploy_submits_with_the_stacks_current_job_definition(aws, batch_queue, monkeypatch):
    session, _, resources = aws
    job = _job_with_lost_units(aws, batch_queue, monkeypatch)
    first = session.client("batch").describe_jobs(jobs=[job["worker_job"]])["jobs"][0]
    assert first["jobDefinition"] == batch_queue.job_definition
    # The redeploy: CloudFormation registers the changed definition as a new revision and
    # deregisters the old one; the stack's JobDefinitionArn output names the new revision.
    batch = session.client("batch")
    name = batch.describe_job_definitions(jobDefinitions=[batch_queue.job_definition])["jobDefinitions"][0]
    current = batch.register_job_definition(jobDefinitionName=name["jobDefinitionName"], type="container",
                                            containerProperties={"image": "looking-glass-worker:v2", "vcpus": 1,
                                                                 "memory": 512})["jobDefinitionArn"]
    batch.deregister_job_definition(jobDefinition=batch_queue.job_definition)
    assert current != batch_queue.job_definition

    outputs = {OUTPUT_JOB_QUEUE: batch_queue.job_queue, OUTPUT_JOB_DEFINITION: current}
    out = retry(StackOnMoto(session, resources, outputs=outputs), job["job_id"])
    described = _described(session, out["workers"])
    assert described["jobDefinition"] == current
    assert described["jobQueue"] == batch_queue.job_queue
    assert described["arrayProperties"]["size"] == job["workers"]


def test_retry_starts_workers_from_the_stack_outputs_when_batch_forgot_the_first_job(aws, batch_queue, monkeypatch):
    session, names, resources = aws
    job = _job_with_lost_units(aws, batch_queue, monkeypatch)
    forgotten = str(uuid.uuid4())  # Batch keeps a job's record for a limited time only
    store_of(session, names).update_job(job["job_id"], {"worker_job": forgotten})
    assert not session.client("batch").describe_jobs(jobs=[forgotten])["jobs"]

    outputs = {OUTPUT_JOB_QUEUE: batch_queue.job_queue, OUTPUT_JOB_DEFINITION: batch_queue.job_definition}
    out = retry(StackOnMoto(session, resources, outputs=outputs), job["job_id"])
    described = _described(session, out["workers"])
    assert (described["jobQueue"], described["jobDefinition"]) == (batch_queue.job_queue, batch_queue.job_definition)
    env = {e["name"]: e["value"] for e in described["container"]["environment"]}
    assert env["LG_JOB_ID"] == job["job_id"]


def test_a_refused_submit_after_the_units_are_queued_says_so_and_how_to_start_workers(
    aws, batch_queue, monkeypatch, capsys
):
    session, _, resources = aws
    job = _job_with_lost_units(aws, batch_queue, monkeypatch)
    gone = batch_queue.job_queue.rsplit("/", 1)[0] + "/deleted-queue"  # Batch refuses: no such queue
    dep = StackOnMoto(session, resources, outputs={OUTPUT_JOB_QUEUE: gone, OUTPUT_JOB_DEFINITION: batch_queue.job_definition})
    monkeypatch.setattr(cli_jobs, "_deployment", lambda args: dep)

    with pytest.raises(SystemExit) as ended:
        cli_main(["retry", job["job_id"]])
    message = str(ended.value)  # exit status 1: the message rides in the SystemExit
    tiles = int(job["tiles_total"])
    assert message.startswith(f"error: job {job['job_id']}: {tiles:,} tiles are queued again in "), message
    assert "the submission to Batch failed (ClientException: " in message and "does not exist" in message
    command = shlex.split(message.split("`")[1])
    assert command[:3] == ["aws", "batch", "submit-job"]
    assert command[command.index("--job-queue") + 1] == gone
    assert command[command.index("--array-properties") + 1] == f"size={job['workers']}"
    overrides = json.loads(command[command.index("--container-overrides") + 1])
    assert overrides == {"environment": [{"name": "LG_JOB_ID", "value": job["job_id"]}]}
    said = capsys.readouterr().out
    assert said.startswith(f"job {job['job_id']}: ") and f"{tiles:,} tiles enqueued" in said
    assert said.rstrip().endswith("; no workers started"), said
    assert _queued_tiles(session, resources, job["job_id"]) == tiles  # the work stays queued


def test_without_outputs_and_first_job_retry_says_the_work_is_queued(aws, batch_queue, monkeypatch):
    session, names, resources = aws
    job = _job_with_lost_units(aws, batch_queue, monkeypatch)
    store_of(session, names).update_job(job["job_id"], {"worker_job": str(uuid.uuid4())})

    with pytest.raises(WorkersNotStarted) as refused:
        retry(StackOnMoto(session, resources), job["job_id"])  # a deployment object without outputs
    message, tiles = str(refused.value), int(job["tiles_total"])
    assert "Batch no longer knows the job's latest Batch job" in message
    assert f"--job-queue {UNKNOWN_QUEUE} --job-definition {UNKNOWN_DEFINITION}" in message
    assert refused.value.summary["tiles_enqueued"] == tiles and refused.value.summary["workers"] is None
    assert _queued_tiles(session, resources, job["job_id"]) == tiles
