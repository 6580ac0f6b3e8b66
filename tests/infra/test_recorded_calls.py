"""Least privilege, proven on a run: every AWS call the enumerator and the worker make in an
end-to-end run on the embedded endpoint (moto) is recorded (service, action, resource ARN) and
checked against the policies of the role that would make it in the synthesized templates (the
``default`` snapshots: the Lambda role ``TileEnumeratorServiceRole``, the worker job role
``WorkerJobRole``). A call the role does not allow fails the test. Grants never exercised are
listed in ``UNEXERCISED`` with the reason each is kept; one missing there, or listed but
exercised, fails too.

The CLI's operator commands run with the operator's own credentials (no role of the stacks);
what they need is generated from their recorded calls into docs/deploy.md and kept equal to it
by test_operator_policy.py.
"""

from __future__ import annotations

import json

import pytest

pytest.importorskip("aws_cdk", reason="aws-cdk-lib is not installed (pip install -e '.[cdk]')")

from conftest import SAMPLE_POLYGON, drain, geojson_bytes, model_copy  # noqa: E402
from iam_check import RolePolicy, iam_requests, record_calls  # noqa: E402
from template_snapshots import SNAPSHOTS, job_definition_environment  # noqa: E402

from looking_glass.local.embedded import LocalLambdaContext, load_enumerator_handler  # noqa: E402
from looking_glass.pipeline.enumerator import upload_aoi  # noqa: E402
from looking_glass.pipeline.launchers import register_local_launcher  # noqa: E402
from looking_glass.pipeline.store import COMPLETE, ResultsStore  # noqa: E402

ACCOUNT, REGION = "123456789012", "us-east-1"  # moto's default account; LOCAL_AWS_ENV's region
JOB_QUEUE_ARN = f"arn:aws:batch:{REGION}:{ACCOUNT}:job-queue/rehearsal"
JOB_DEFINITION_ARN = f"arn:aws:batch:{REGION}:{ACCOUNT}:job-definition/rehearsal-worker:1"

# Grants of the roles no recorded call used, by role and action, with the reason each is kept.
UNEXERCISED = {
    ("enumerator", "batch:SubmitJob"): "launches the workers; the run uses local worker "
    "processes (LG_WORKER_LAUNCHER=local), as moto's Batch runs no container",
    ("enumerator", "xray:PutTraceSegments"): "active tracing: the Lambda runtime sends the "
    "trace segments, not the handler's boto3",
    ("enumerator", "xray:PutTelemetryRecords"): "active tracing (the Lambda runtime)",
    ("enumerator", "sqs:GetQueueAttributes"): "CDK's SqsDestination grants it on the on-failure "
    "queue, which Lambda itself (not the handler) sends failed events to",
    ("enumerator", "sqs:GetQueueUrl"): "CDK's SqsDestination grant on the on-failure queue",
    ("enumerator", "s3:GetObjectVersion"): "the S3 events of a versioned trigger bucket carry the "
    "object's versionId and the AOI is read at that version; moto's notifications carry none",
    ("worker", "sqs:ChangeMessageVisibility"): "the heartbeat extends held messages at half the "
    "600 s visibility timeout, and units kept for redelivery are made visible later; this run "
    "is shorter and its tiles all succeed (tests/integration/test_worker.py covers both)",
}


def _physical(resources) -> dict[str, dict[str, str]]:
    """Logical id prefix -> attributes of the resource standing in for it in this run."""

    def queue(url: str) -> dict[str, str]:
        name = url.rstrip("/").rsplit("/", 1)[-1]
        return {"Ref": url, "Arn": f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}", "QueueName": name}

    def bucket(name: str) -> dict[str, str]:
        return {"Ref": name, "Arn": f"arn:aws:s3:::{name}"}

    table = resources.results_table
    return {
        "TriggerBucket": bucket(resources.trigger_bucket),
        "MasksBucket": bucket(resources.masks_bucket),
        "ResultsTable": {"Ref": table, "Arn": f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{table}"},
        "TileQueue": queue(resources.tile_queue_url),
        "TileDeadLetterQueue": queue(resources.tile_dlq_url),
        "EnumeratorFailures": queue(f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/enumerator-failures"),
        "JobQueue": {"JobQueueArn": JOB_QUEUE_ARN, "Ref": JOB_QUEUE_ARN},
        "WorkerJobDefinition": {"Ref": JOB_DEFINITION_ARN},
    }


class _Launcher:
    def __init__(self):
        self.launched = []

    def launch(self, job_id, workers):
        self.launched.append((job_id, workers))
        return "local"


@pytest.fixture(scope="module")
def tiny_segmenter():
    import keras

    from looking_glass.model.deeplab import ModelConfig, build_deeplabv3plus
    from looking_glass.model.segmenter import ModelInfo, Segmenter

    keras.utils.set_random_seed(1)
    model = build_deeplabv3plus(ModelConfig(alpha=0.35, aspp_filters=8, decoder_filters=8))
    return Segmenter(model, ModelInfo("tiny-test", "0", False, "random tiny model for tests"))


def register_active_model(session, bucket: str, parameter: str, folder) -> str:
    """The operator's side of promotion: one registered version, made active; its URI."""
    from looking_glass.model import registry

    model = model_copy(folder, "v1", model_id="recorded")  # a real model: register and use load it
    record = registry.register(session.client("s3"), bucket, model)
    registry.use(session.client("s3"), session.client("ssm"), bucket, parameter, "v1")
    return record.uri


def test_every_recorded_call_is_allowed_by_its_role(aws, tile_server, tiny_segmenter, monkeypatch, tmp_path):
    session, names, resources = aws
    for key, value in resources.to_env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("LG_WORKER_LAUNCHER", "local")
    launcher = _Launcher()
    register_local_launcher(launcher)
    try:
        # The operator uploads an AOI (their own credentials); moto notifies the events queue.
        job_id = upload_aoi(session.client("s3"), resources.trigger_bucket, "area.geojson", geojson_bytes(SAMPLE_POLYGON))
        sqs = session.client("sqs")
        events_url = sqs.get_queue_url(QueueName=names.aoi_events_queue)["QueueUrl"]
        events = [json.loads(m["Body"]) for m in drain(sqs, events_url, wait=1)]
        handler = load_enumerator_handler()
        with record_calls() as enumerator_calls:
            for event in (e for e in events if "Records" in e):
                handler(event, LocalLambdaContext(aws_request_id="recorded"))
    finally:
        register_local_launcher(None)
    assert launcher.launched, "the enumerator launched no worker"

    # One malformed work unit, so that the worker dead-letters it.
    sqs.send_message(QueueUrl=resources.tile_queue_url, MessageBody="not a work unit")
    from looking_glass.pipeline.worker import Worker
    from looking_glass.runtime.settings import WorkerSettings

    settings = WorkerSettings(
        tile_url_template=tile_server.url_template, model_path="", batch_size=8, threshold=0.5,
        download_concurrency=4, download_timeout_s=30.0, download_retries=2, write_masks=True,
        idle_exit_s=0.5, poll_wait_s=0,
    )
    # The worker resolves the active model at start as worker_main does, from the variable the
    # job definition sets (LG_MODEL_PARAMETER) through the parameter to the registered version.
    from looking_glass.model.registry import ENV_MODEL_PARAMETER, resolve_worker_model

    # (literal values only: the others are the resources this run stands in for)
    job_env = {k: v for k, v in job_definition_environment("default").items() if isinstance(v, str)}
    uri = register_active_model(session, resources.masks_bucket, job_env[ENV_MODEL_PARAMETER], tmp_path / "m")
    # Slow tiles wait (30 s, 2 retries): under load a timed-out tile would keep its unit for
    # redelivery and leave the job RUNNING.
    with record_calls() as worker_calls:
        fetched = resolve_worker_model(environ=job_env, ssm=session.client("ssm"), s3=session.client("s3"),
                                       dest=tmp_path / "fetched")
        Worker(session, resources, settings, tiny_segmenter).run()
    assert fetched.endswith("model.keras") and uri.endswith("registry/recorded/v1/model.keras")
    job = ResultsStore(session.client("dynamodb"), names.results_table).get_job(job_id)
    assert job["status"] == COMPLETE

    physical = _physical(resources)
    roles = {
        "enumerator": (RolePolicy(SNAPSHOTS, "default", "Ingest", "TileEnumeratorServiceRole", physical, ACCOUNT, REGION), enumerator_calls),
        "worker": (RolePolicy(SNAPSHOTS, "default", "Inference", "WorkerJobRole", physical, ACCOUNT, REGION), worker_calls),
    }
    denied, exercised, seen = [], set(), {}
    for role, (policy, calls) in roles.items():
        assert calls, f"no call recorded for the {role}"
        for call in calls:
            for action, arn in iam_requests(call, ACCOUNT, REGION):
                seen.setdefault(role, set()).add((action, arn))
                if policy.allows(action, arn):
                    exercised.add((role, action))
                else:
                    denied.append(f"{role}: {call.service}:{call.operation} -> {action} on {arn}")
    assert denied == [], "calls the role does not allow:\n" + "\n".join(denied)

    unexercised = {
        (role, action)
        for role, (policy, _) in roles.items()
        for action in policy.granted_actions()
        if (role, action) not in exercised
    }
    missing = sorted(unexercised - set(UNEXERCISED))
    stale = sorted(set(UNEXERCISED) - unexercised)
    assert not missing, f"grants no call used, without a reason in UNEXERCISED: {missing}"
    assert not stale, f"UNEXERCISED lists grants that were used: {stale}"
    print(  # pytest -s: the calls and the unexercised grants
        "\n".join(
            [f"{role} {action} {arn}" for role in sorted(seen) for action, arn in sorted(seen[role])]
            + [f"unexercised {r} {a}: {UNEXERCISED[(r, a)]}" for r, a in sorted(unexercised)]
        )
    )


def test_the_policy_check_refuses_what_a_role_does_not_grant():
    """The evaluator is not a rubber stamp: calls outside the grants are refused."""
    from types import SimpleNamespace

    queues = f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}"
    resources = SimpleNamespace(
        trigger_bucket="tb", masks_bucket="mb", results_table="rt",
        tile_queue_url=f"{queues}/tiles", tile_dlq_url=f"{queues}/dlq",
    )
    physical = _physical(resources)
    worker = RolePolicy(SNAPSHOTS, "default", "Inference", "WorkerJobRole", physical, ACCOUNT, REGION)
    enumerator = RolePolicy(SNAPSHOTS, "default", "Ingest", "TileEnumeratorServiceRole", physical, ACCOUNT, REGION)
    table = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/rt"
    assert worker.allows("s3:PutObject", "arn:aws:s3:::mb/masks/j/18/1/2.png")
    assert not worker.allows("s3:PutObject", "arn:aws:s3:::mb/elsewhere.png")
    assert not worker.allows("s3:GetObject", "arn:aws:s3:::tb/aoi/a.geojson")
    assert not worker.allows("sqs:SendMessage", f"arn:aws:sqs:{REGION}:{ACCOUNT}:tiles")
    assert not worker.allows("dynamodb:Query", table) and not worker.allows("dynamodb:GetItem", table)
    assert enumerator.allows("s3:GetObject", "arn:aws:s3:::tb/aoi/a.geojson")
    assert not enumerator.allows("s3:GetObject", "arn:aws:s3:::tb/other/a.geojson")
    parameter = f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/looking-glass/LookingGlass/active-model"
    assert worker.allows("ssm:GetParameter", parameter) and worker.allows("s3:GetObject", "arn:aws:s3:::mb/registry/m/v1/model.keras")
    assert not worker.allows("ssm:GetParameter", parameter.replace("LookingGlass", "Other"))
    assert not worker.allows("ssm:PutParameter", parameter) and not enumerator.allows("ssm:GetParameter", parameter)
    assert not worker.allows("s3:GetObject", "arn:aws:s3:::mb/masks/j/18/1/2.png")
    assert not worker.allows("s3:PutObject", "arn:aws:s3:::mb/registry/m/v9/model.keras")
    assert not enumerator.allows("dynamodb:BatchGetItem", table)
    assert enumerator.allows("batch:SubmitJob", JOB_QUEUE_ARN) and enumerator.allows("batch:SubmitJob", JOB_DEFINITION_ARN)
    assert not enumerator.allows("batch:SubmitJob", f"arn:aws:batch:{REGION}:{ACCOUNT}:job-queue/other")
