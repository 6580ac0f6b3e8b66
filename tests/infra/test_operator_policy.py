"""The operator's policy in docs/deploy.md is the one the CLI's operator commands need: their AWS
calls against a deployment in moto (stacks with the outputs the CDK stacks declare) are recorded,
generalised into a policy document (``operator_policy``) and compared with the documented block.
A command that starts making another call, or a documented grant no command uses, fails here."""

from __future__ import annotations

import json
import re
import uuid

import boto3
import pytest
from conftest import (
    SAMPLE_POLYGON,
    create_output_stack,
    drain,
    geojson_bytes,
    make_training_dataset,
    model_copy,
    run_cli,
)
from iam_check import Statement, iam_requests, record_calls
from operator_policy import GENERATED, NOT_RECORDED, documented, generalise, policy, render, stack_commands
from test_recorded_calls import ACCOUNT, REGION, tiny_segmenter  # noqa: F401 -- the fixture

from looking_glass.model.registry import parameter_name
from looking_glass.runtime import resources as res


class _LocalLauncher:
    def launch(self, job_id, workers):
        return "local"


@pytest.fixture
def deployment(aws, batch_queue):
    """A deployment ``Op<hex>`` whose stacks' outputs name the fixture's resources (its Batch job
    queue and job definition in moto's Batch)."""
    session, names, resources = aws
    name = f"Op{uuid.uuid4().hex[:8]}"
    create_output_stack(f"{name}Storage", {res.OUTPUT_TRIGGER_BUCKET: resources.trigger_bucket,
                                     res.OUTPUT_MASKS_BUCKET: resources.masks_bucket,
                                     res.OUTPUT_RESULTS_TABLE: resources.results_table})
    create_output_stack(f"{name}Inference", {res.OUTPUT_TILE_QUEUE_URL: resources.tile_queue_url,
                                       res.OUTPUT_TILE_DLQ_URL: resources.tile_dlq_url,
                                       res.OUTPUT_ACTIVE_MODEL_PARAMETER: parameter_name(name),
                                       res.OUTPUT_JOB_QUEUE: batch_queue.job_queue,
                                       res.OUTPUT_JOB_DEFINITION: batch_queue.job_definition})
    training_bucket = f"train-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(Bucket=training_bucket)
    machine = boto3.client("stepfunctions").create_state_machine(
        name=f"{name}-training", roleArn=f"arn:aws:iam::{ACCOUNT}:role/sfn",
        definition=json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": True}}}),
    )["stateMachineArn"]
    create_output_stack(f"{name}Training", {res.OUTPUT_TRAINING_BUCKET: training_bucket,
                                            res.OUTPUT_TRAINING_STATE_MACHINE: machine})
    placeholders = {
        "Region": REGION, "Account": ACCOUNT, "Deployment": name,
        "TriggerBucketName": resources.trigger_bucket, "MasksBucketName": resources.masks_bucket,
        "ResultsTableName": resources.results_table,
        "TileQueueName": resources.tile_queue_url.rsplit("/", 1)[-1],
        "TileDeadLetterQueueName": resources.tile_dlq_url.rsplit("/", 1)[-1],
        "ActiveModelParameterName": parameter_name(name),
        "TrainingBucketName": training_bucket, "TrainingStateMachineArn": machine,
        "JobQueueArn": batch_queue.job_queue, "JobDefinitionArn": batch_queue.job_definition,
    }
    return session, names, resources, name, placeholders


def _run_the_pipeline(session, names, resources, segmenter, tile_server, monkeypatch) -> None:
    """What the stack's Lambda and workers do between the operator's commands (not recorded)."""
    from looking_glass.local.embedded import LocalLambdaContext, load_enumerator_handler
    from looking_glass.pipeline.launchers import register_local_launcher
    from looking_glass.pipeline.worker import Worker
    from looking_glass.runtime.settings import WorkerSettings

    for key, value in resources.to_env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("LG_WORKER_LAUNCHER", "local")
    sqs = session.client("sqs")
    events_url = sqs.get_queue_url(QueueName=names.aoi_events_queue)["QueueUrl"]
    register_local_launcher(_LocalLauncher())
    try:
        handler = load_enumerator_handler()
        for event in (json.loads(m["Body"]) for m in drain(sqs, events_url, wait=1)):
            if "Records" in event:
                handler(event, LocalLambdaContext(aws_request_id="operator"))
    finally:
        register_local_launcher(None)
    settings = WorkerSettings(
        tile_url_template=tile_server.url_template, model_path="", batch_size=8, threshold=0.5,
        download_concurrency=4, download_timeout_s=30.0, download_retries=2, write_masks=True,
        idle_exit_s=0.5, poll_wait_s=0,
    )
    from looking_glass.pipeline.jobs import queue_depth

    Worker(session, resources, settings, segmenter).run()
    # A unit kept for redelivery (a tile fetch that timed out) would hold the queue: retry refuses.
    assert queue_depth(sqs, resources.tile_queue_url) == 0, "the workers left work in the tile queue"


def test_the_documented_operator_policy_is_what_the_commands_call(
    deployment, tile_server, tiny_segmenter, monkeypatch, tmp_path, capsys  # noqa: F811
):
    session, names, resources, name, placeholders = deployment
    aoi = tmp_path / "area.geojson"
    aoi.write_bytes(geojson_bytes(SAMPLE_POLYGON))
    model = model_copy(tmp_path / "model", "v1", model_id="op")  # a real model: register and use load it
    calls: dict[str, list] = {}

    def operator(command: str, *argv: str) -> str:
        with record_calls() as recorded:
            code, out, err = run_cli(capsys, *argv, "--stack", name)
        assert code == 0, (argv, err)
        calls.setdefault(command, []).extend(recorded)
        return out

    job_id = operator("submit", "submit", str(aoi)).strip()
    _run_the_pipeline(session, names, resources, tiny_segmenter, tile_server, monkeypatch)
    # One tile result lost, its work unit in the dead-letter queue next to a stranger's message:
    # status holds and releases both, retry moves the unit back to the tile queue.
    from looking_glass.grid import ZOOM, tile_from_quadkey
    from looking_glass.pipeline.packs import pack_of, pack_sort_key, tile_attribute
    from looking_glass.pipeline.retry import runs_of
    from looking_glass.pipeline.store import JOB_SORT_KEY, ResultsStore
    from looking_glass.pipeline.workunits import pack_runs

    store = ResultsStore(session.client("dynamodb"), resources.results_table)
    tile, failed = [t["quadkey"] for t in store.query_tiles(job_id, attributes=("quadkey",))][:2]
    ddb = session.client("dynamodb")

    def pack_key(qk):
        return {res.TABLE_PARTITION_KEY: {"S": job_id}, res.TABLE_SORT_KEY: {"S": pack_sort_key(pack_of(qk))}}

    ddb.update_item(TableName=resources.results_table, Key=pack_key(tile), UpdateExpression="REMOVE #t",
                    ExpressionAttributeNames={"#t": tile_attribute(tile)})
    # ... and one tile failed (its pack and the job counters as the worker would have left them).
    ddb.update_item(TableName=resources.results_table, Key=pack_key(failed),
        UpdateExpression="SET #t.s = :f, #t.a = :zero", ExpressionAttributeNames={"#t": tile_attribute(failed)},
        ExpressionAttributeValues={":f": {"S": "failed"}, ":zero": {"N": "0"}})
    ddb.update_item(TableName=resources.results_table, Key={
        res.TABLE_PARTITION_KEY: {"S": job_id}, res.TABLE_SORT_KEY: {"S": JOB_SORT_KEY}},
        UpdateExpression="ADD tiles_done :minus, tiles_failed :one",
        ExpressionAttributeValues={":minus": {"N": "-1"}, ":one": {"N": "1"}})
    (unit,) = pack_runs(job_id, ZOOM, runs_of([tile_from_quadkey(tile)[:2]]), 10)
    sqs = session.client("sqs")
    sqs.send_message(QueueUrl=resources.tile_dlq_url, MessageBody=unit.to_json())
    sqs.send_message(QueueUrl=resources.tile_dlq_url, MessageBody="not a work unit")

    assert re.search(r"^dlq_messages +1$", operator("status", "status", job_id), re.M)  # (status aligns its columns)
    assert operator("results", "results", job_id, "--format", "csv").startswith("quadkey")
    operator("models register", "models", "register", str(model))
    operator("models use", "models", "use", "v1")
    operator("models use", "models", "use", "shipped")  # back to the shipped model: deletes the parameter
    operator("models use", "models", "use", "v1")
    assert "op/v1" in operator("models", "models")
    operator("train", "train", "--data", str(make_training_dataset(tmp_path / "data")))
    polygons = tmp_path / "polygons.geojson"
    polygons.write_bytes(geojson_bytes(SAMPLE_POLYGON))
    assert operator("results --within", "results", job_id, "--within", str(polygons), "--no-progress")
    operator("results --compare", "results", job_id, "--compare", str(polygons), "--no-progress")  # as mapped buildings
    operator("map", "map", job_id, "--out", str(tmp_path / "map"))
    operator("export", "export", job_id, "--out", str(tmp_path / "buildings.geojson"), "--no-progress")
    # Retry starts an array job of two workers (as the enumerator would have recorded for
    # LG_TILES_PER_WORKER=1), so a failed worker is a failed array child, as on a real stack.
    store.update_job(job_id, {"workers": 2, "tiles_per_worker": 1})
    retried = operator("retry", "retry", job_id)
    assert "1 tiles reset" in retried and "1 dead-letter messages moved back" in retried, retried
    assert "; Batch job " in retried and "(2 worker(s))" in retried, retried  # on the stack's JobQueueArn
    _wait_until_the_workers_failed(session.client("batch"), retried.split("; Batch job ")[1].split()[0])
    # The job runs again and its workers failed: jobs and status ask Batch (DescribeJobs, and
    # ListJobs for the failed array child), and each records the failure in the job (UpdateItem).
    assert "(workers failing)" in operator("jobs", "jobs")
    store.update_job(job_id, {"worker_error": "stale"})
    assert "worker(s) failed" in operator("status", "status", job_id)

    recorded = {
        command: {(action, generalise(arn, placeholders)) for c in made for action, arn in iam_requests(c, ACCOUNT, REGION)}
        for command, made in calls.items()
    }
    document, commands = policy(recorded)

    # The document allows every recorded call (placeholders filled in) and nothing wildcarded
    # beyond the deployment's own prefixes; only Batch's Describe/List (no resource ARNs) is "*".
    def concrete(resource: str) -> str:
        for placeholder, value in placeholders.items():
            resource = resource.replace(f"${{{placeholder}}}", value)
        return resource

    statements = [Statement(s["Action"], [concrete(r) for r in s["Resource"]], False) for s in document["Statement"]]
    for command, made in calls.items():
        for c in made:
            for action, arn in iam_requests(c, ACCOUNT, REGION):
                assert any(s.allows(action, arn) for s in statements), (command, action, arn)
    for s in document["Statement"]:
        assert "*" not in s["Resource"] or s["Action"] == ["batch:DescribeJobs", "batch:ListJobs"], s
    assert not any(s.allows("s3:PutObject", f"arn:aws:s3:::{resources.masks_bucket}/masks/x.png") for s in statements)
    # Every command that takes --stack is recorded: one left out would leave its calls out of the policy.
    missing = stack_commands() - {command.split(" --")[0] for command in commands}
    assert not missing, f"operator commands whose AWS calls are not recorded: {sorted(missing)}"

    block = render(document, commands)
    if block != documented():
        GENERATED.write_text(block)
        pytest.fail(f"docs/deploy.md's operator policy differs from the recorded calls; the new block is in "
                    f"{GENERATED}: review it, then `.venv/bin/python tests/infra/operator_policy.py write`")


def _wait_until_the_workers_failed(batch, worker_job: str, timeout_s: float = 60.0) -> None:
    """Wait until every child of the array job ``worker_job`` failed (moto's Batch runs no
    container without Docker, and an image it cannot pull fails too; each child is also
    terminated), so the calls of jobs and status do not depend on how far Batch got."""
    import time

    size = batch.describe_jobs(jobs=[worker_job])["jobs"][0]["arrayProperties"]["size"]
    for index in range(size):
        batch.terminate_job(jobId=f"{worker_job}:{index}", reason="operator policy test")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        (parent,) = batch.describe_jobs(jobs=[worker_job])["jobs"]
        if parent["arrayProperties"].get("statusSummary", {}).get("FAILED") == size:
            return
        time.sleep(0.5)
    raise AssertionError(f"the workers of Batch job {worker_job} did not all fail within {timeout_s:.0f} s")


def test_every_stack_command_is_found():
    found = stack_commands()
    assert {"submit", "jobs", "status", "results", "retry", "map", "export", "models", "models use",
            "models register", "train"} <= found
    assert not found & {"prepare", "demo", "up", "serve-tiles", "aoi", "validate"}  # no --stack: nothing to record


def test_generalise_names_only_the_deployment():
    names = {"Region": REGION, "Account": ACCOUNT, "Deployment": "Op1", "MasksBucketName": "mb",
             "TileQueueName": "q-tiles", "TileDeadLetterQueueName": "q-tiles-dlq",
             "ActiveModelParameterName": "/looking-glass/Op1/active-model"}
    assert generalise("arn:aws:s3:::mb/registry/m/v1/model.keras", names) == "arn:aws:s3:::${MasksBucketName}/registry/*"
    assert generalise("arn:aws:s3:::mb", names) == "arn:aws:s3:::${MasksBucketName}"
    assert generalise(f"arn:aws:sqs:{REGION}:{ACCOUNT}:q-tiles-dlq", names) == \
        "arn:aws:sqs:${Region}:${Account}:${TileDeadLetterQueueName}"
    assert generalise(f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/looking-glass/Op1/active-model", names) == \
        "arn:aws:ssm:${Region}:${Account}:parameter${ActiveModelParameterName}"
    assert generalise(f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/Op1Storage/*", names) == \
        "arn:aws:cloudformation:${Region}:${Account}:stack/${Deployment}Storage/*"
    for foreign in ("arn:aws:s3:::someone-elses/x", f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/Other/*",
                    "arn:aws:sqs:eu-west-1:999999999999:other"):
        with pytest.raises(ValueError):
            generalise(foreign, names)
    assert all(reason for *_, reason in NOT_RECORDED)
