"""The deployment rehearsal (issue 17): the five synthesized templates created by moto's
CloudFormation (``cfn_rehearsal``), then an AOI run through what they created, wired only by the
stacks' outputs (the CLI's ``--stack``) and the environments the templates give the Lambda and
the worker job definition.

What it proves: the templates, with the types moto cannot create taken out (each named, with its
stand-in, in ``cfn_rehearsal.STAND_INS``), create in the app's order with every cross-stack
reference resolved; the outputs are what the CLI needs; the Lambda's environment names the
rehearsed bucket, table, queues, Batch job queue and job definition, and the enumerator run with
it submits a Batch job moto accepts; the job definition's environment is a worker configuration
that drains the rehearsed queue and writes the rehearsed table and bucket; promotion (`models use
--stack`) reaches the parameter the job definition names. What it does not prove: IAM (moto does
not enforce the roles; tests/infra/test_recorded_calls.py checks the calls against them), bucket
and queue policies, alarms, metric filters, S3 notifications (the rehearsal builds the event),
the Lambda runtime (the handler runs in-process) and containers (moto's Batch runs none; the
worker runs in-process with the job definition's variables, the tile template pointed at a local
tile server because the configured one is on the internet).
"""

from __future__ import annotations

import uuid
from pathlib import Path

import boto3
import pytest
from cfn_rehearsal import ORDER, STAND_INS, deploy, template
from conftest import SAMPLE_POLYGON, geojson_bytes, model_copy, run_cli
from test_recorded_calls import tiny_segmenter  # noqa: F401 -- the fixture

pytest.importorskip("aws_cdk", reason="aws-cdk-lib is not installed (pip install -e '.[cdk]')")


@pytest.fixture(scope="module")
def rehearsal(moto_endpoint, tile_server):
    # Deployed with the test's tile server as the default imagery (-c tile_url_template=...): the
    # CLI, the enumerator and the worker all digest that definition (a unit's digest must match).
    name = f"Rehearsal{uuid.uuid4().hex[:6]}"
    return name, deploy(boto3.client("cloudformation"), boto3.client("s3"), boto3.client("iam"), name,
                        tile_url_template=tile_server.url_template)


def _physical(rehearsal, suffix: str, prefix: str, kind: str) -> str:
    (found,) = [r["PhysicalResourceId"] for r in rehearsal[1]["resources"][suffix]
                if r["LogicalResourceId"].startswith(prefix) and r["ResourceType"] == kind]
    return found


def test_the_stand_ins_are_exactly_what_moto_cannot_create(rehearsal):
    from moto.cloudformation.parsing import get_model_map

    used = {r["Type"] for suffix in ORDER for r in template(suffix)["Resources"].values()}
    cannot = {t for t in used if t not in get_model_map()}  # custom resources included
    assert set(STAND_INS) == cannot, "update cfn_rehearsal.STAND_INS for this moto version"
    removed = {kind for suffix in ORDER for _, kind in rehearsal[1]["removed"][suffix] if kind in STAND_INS}
    assert removed == cannot
    # Only the dashboard goes with them (its widgets show the alarms), and outputs of alarms.
    cascaded = [(s, i, k) for s in ORDER for i, k in rehearsal[1]["removed"][s]
                if k not in STAND_INS and not i.startswith("Outputs/")]
    assert [(s, k.split(" ")[0]) for s, _, k in cascaded] == [("Monitoring", "AWS::CloudWatch::Dashboard")]
    guide = (Path(__file__).resolve().parents[2] / "docs" / "deploy.md").read_text()
    assert all(f"`{kind}`" in guide for kind in STAND_INS), "docs/deploy.md's rehearsal table lacks a type"


def test_every_stack_is_created_with_the_outputs_the_cli_reads(rehearsal):
    from looking_glass.local.deployment import REQUIRED_OUTPUTS, resolve_stack

    name, result = rehearsal
    outputs = {k: v for suffix in ORDER for k, v in result["outputs"][suffix].items()}
    for key in (*REQUIRED_OUTPUTS, "JobQueueArn", "JobDefinitionArn", "ActiveModelParameterName",
                "TrainingBucketName", "TrainingStateMachineArn", "DashboardUrl"):
        assert outputs.get(key), key
    dep = resolve_stack(name)
    assert boto3.client("s3").head_bucket(Bucket=dep.resources.masks_bucket)
    assert boto3.client("dynamodb").describe_table(TableName=dep.resources.results_table)["Table"]["TableStatus"]
    for url in (dep.resources.tile_queue_url, dep.resources.tile_dlq_url):
        attrs = boto3.client("sqs").get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        assert attrs["QueueArn"]
    batch = boto3.client("batch")
    assert batch.describe_job_queues(jobQueues=[outputs["JobQueueArn"]])["jobQueues"]
    assert batch.describe_job_definitions(jobDefinitions=[outputs["JobDefinitionArn"]])["jobDefinitions"]


def test_an_aoi_runs_through_the_rehearsed_stacks(rehearsal, tile_server, tiny_segmenter, monkeypatch, tmp_path, capsys):  # noqa: F811
    from looking_glass.local.deployment import resolve_stack
    from looking_glass.local.embedded import LocalLambdaContext, load_enumerator_handler
    from looking_glass.model.registry import resolve_worker_model
    from looking_glass.pipeline.store import COMPLETE, ResultsStore
    from looking_glass.pipeline.worker import Worker
    from looking_glass.runtime.resources import DeployedResources
    from looking_glass.runtime.settings import WorkerSettings

    name, result = rehearsal
    # The operator submits with the CLI (outputs only).
    aoi = tmp_path / "area.geojson"
    aoi.write_bytes(geojson_bytes(SAMPLE_POLYGON))
    code, out, err = run_cli(capsys, "submit", str(aoi), "--stack", name)
    assert code == 0, err
    job_id = out.strip()

    # The enumerator with the Lambda's own environment, on the event S3 would send.
    lam = boto3.client("lambda").get_function_configuration(FunctionName=_physical(rehearsal, "Ingest", "TileEnumerator", "AWS::Lambda::Function"))
    for key, value in lam["Environment"]["Variables"].items():
        monkeypatch.setenv(key, value)
    dep = resolve_stack(name)
    head = boto3.client("s3").head_object(Bucket=dep.resources.trigger_bucket, Key=f"aoi/{aoi.name}")
    event = {"Records": [{"s3": {"bucket": {"name": dep.resources.trigger_bucket}, "object": {
        "key": f"aoi/{aoi.name}", "eTag": head["ETag"].strip('"'), "versionId": head.get("VersionId")}}}]}
    answer = load_enumerator_handler()(event, LocalLambdaContext(aws_request_id="rehearsal"))
    assert [j["job_id"] for j in answer["jobs"]] == [job_id] and answer["jobs"][0]["status"] == "RUNNING", answer
    store = ResultsStore(boto3.client("dynamodb"), dep.resources.results_table)
    worker_job = store.get_job(job_id)["worker_job"]
    (submitted,) = boto3.client("batch").describe_jobs(jobs=[worker_job])["jobs"]
    assert submitted["jobQueue"] == result["outputs"]["Inference"]["JobQueueArn"]

    # A model made active with the CLI is what a worker with the job definition's variables loads.
    model = model_copy(tmp_path / "m", "v1", model_id="rehearsal")  # a real model: register and use load it
    assert run_cli(capsys, "models", "register", str(model), "--stack", name)[0] == 0
    assert run_cli(capsys, "models", "use", "v1", "--stack", name)[0] == 0
    (definition,) = boto3.client("batch").describe_job_definitions(
        jobDefinitions=[result["outputs"]["Inference"]["JobDefinitionArn"]])["jobDefinitions"]
    env = {e["name"]: e["value"] for e in definition["containerProperties"]["environment"]}
    fetched = resolve_worker_model(environ=env, dest=tmp_path / "fetched")
    assert fetched.endswith("model.keras") and (tmp_path / "fetched" / "model.keras").read_bytes() == model.read_bytes()

    # The worker with the job definition's variables (the deployment's template is the tile server).
    assert env["LG_TILE_URL_TEMPLATE"] == tile_server.url_template
    settings = WorkerSettings.from_env({**env, "LG_IDLE_EXIT_S": "0.5", "LG_POLL_WAIT_S": "0",
                                        "LG_DOWNLOAD_TIMEOUT_S": "30", "LG_BATCH_SIZE": "8"})
    Worker(boto3.session.Session(), DeployedResources.from_env(env), settings, tiny_segmenter).run()
    job = store.get_job(job_id)
    assert job["status"] == COMPLETE and int(job["tiles_done"]) == int(job["tiles_total"]) > 0, job
    code, out, _ = run_cli(capsys, "status", job_id, "--stack", name)
    assert code == 0 and "COMPLETE" in out


def test_the_kms_context_creates_with_its_key_on_the_stores(moto_endpoint):
    """``encryption=kms`` (the ``kms`` snapshots, with a training VPC too): the stacks create, and
    the buckets and the queues name the deployment's key, which rotates."""
    name = f"RehearsalKms{uuid.uuid4().hex[:6]}"
    result = deploy(boto3.client("cloudformation"), boto3.client("s3"), boto3.client("iam"), name, context="kms")
    key_arn = result["outputs"]["Storage"]["DataKeyArn"]
    kms = boto3.client("kms")
    assert kms.describe_key(KeyId=key_arn)["KeyMetadata"]["Enabled"]
    assert kms.get_key_rotation_status(KeyId=key_arn)["KeyRotationEnabled"]
    outputs = result["outputs"]
    rule = boto3.client("s3").get_bucket_encryption(Bucket=outputs["Storage"]["MasksBucketName"])[
        "ServerSideEncryptionConfiguration"]["Rules"][0]["ApplyServerSideEncryptionByDefault"]
    assert rule["SSEAlgorithm"] == "aws:kms" and rule["KMSMasterKeyID"] == key_arn
    # (moto's DynamoDB model drops a table's SSESpecification: the table's key is checked on
    # the template, tests/infra/test_encryption.py.)
    attrs = boto3.client("sqs").get_queue_attributes(QueueUrl=outputs["Inference"]["TileQueueUrl"],
                                                     AttributeNames=["KmsMasterKeyId"])["Attributes"]
    assert attrs["KmsMasterKeyId"] == key_arn
