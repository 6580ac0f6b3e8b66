"""Finding a deployment: `--stack NAME` from CloudFormation outputs (moto stacks whose outputs
carry the resource names), and the embedded run from the state file that `looking-glass up`
writes (including `up` itself)."""

from __future__ import annotations

import json
import os
import threading
import time
import uuid

import boto3
import pytest

from looking_glass.local.deployment import (
    DeploymentError,
    resolve,
    resolve_embedded,
    resolve_stack,
    run_embedded,
    write_state,
)
from looking_glass.runtime import resources


def create_stack(name: str, outputs: dict[str, str]) -> None:
    """A stack whose Outputs carry resource names, as the CDK stacks' do."""
    template = {
        "Resources": {"Marker": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": f"m-{uuid.uuid4().hex[:12]}"}}},
        "Outputs": {key: {"Value": value} for key, value in outputs.items()},
    }
    boto3.client("cloudformation").create_stack(StackName=name, TemplateBody=json.dumps(template))


def stack_outputs(res) -> tuple[dict, dict]:
    storage = {
        resources.OUTPUT_TRIGGER_BUCKET: res.trigger_bucket,
        resources.OUTPUT_MASKS_BUCKET: res.masks_bucket,
        resources.OUTPUT_RESULTS_TABLE: res.results_table,
    }
    inference = {resources.OUTPUT_TILE_QUEUE_URL: res.tile_queue_url, resources.OUTPUT_TILE_DLQ_URL: res.tile_dlq_url}
    return storage, inference


def test_stack_outputs_spread_over_the_stacks_become_the_resources(aws):
    _, _, res = aws
    name = f"Dep{uuid.uuid4().hex[:8]}"
    storage, inference = stack_outputs(res)
    create_stack(f"{name}Storage", storage)
    create_stack(f"{name}Inference", {**inference, resources.OUTPUT_DASHBOARD_URL: "https://example/dash"})
    dep = resolve_stack(name)
    assert dep.kind == "stack" and dep.name == name
    assert dep.resources == res
    assert dep.outputs[resources.OUTPUT_DASHBOARD_URL] == "https://example/dash"
    # and the resolved deployment reaches them
    assert dep.client("dynamodb").describe_table(TableName=res.results_table)["Table"]["TableName"] == res.results_table


def test_stack_name_defaults_to_the_default_stack_name(aws):
    _, _, res = aws
    storage, inference = stack_outputs(res)
    default = resources.DEFAULT_STACK_NAME
    cfn = boto3.client("cloudformation")
    for suffix in ("Storage", "Inference"):
        try:
            cfn.delete_stack(StackName=f"{default}{suffix}")
        except Exception:  # noqa: BLE001 - not there yet
            pass
    create_stack(f"{default}Storage", storage)
    create_stack(f"{default}Inference", inference)
    assert resolve(stack="", embedded=None).resources == res  # `--stack` with no NAME
    assert resolve_stack(None).name == default


def test_missing_outputs_are_named(aws):
    _, _, res = aws
    name = f"Dep{uuid.uuid4().hex[:8]}"
    storage, _ = stack_outputs(res)
    create_stack(f"{name}Storage", storage)
    with pytest.raises(DeploymentError) as exc:
        resolve_stack(name)
    message = str(exc.value)
    assert resources.OUTPUT_TILE_QUEUE_URL in message and resources.OUTPUT_TILE_DLQ_URL in message
    assert f"{name}Storage (CREATE_COMPLETE)" in message


def test_no_stack_at_all_is_a_clear_error(moto_endpoint):
    with pytest.raises(DeploymentError, match=r"no stack of deployment 'Absent\w+' found.*AbsentStack\w*Storage"):
        resolve_stack(f"AbsentStack{uuid.uuid4().hex[:6]}")


@pytest.mark.parametrize("bad", ["1abc", "has space", "under_score", "x" * 200])
def test_invalid_stack_names_are_refused(bad):
    with pytest.raises(DeploymentError, match="invalid stack name"):
        resolve_stack(bad)


def test_both_targets_at_once_are_refused():
    with pytest.raises(DeploymentError, match="not both"):
        resolve(stack="X", embedded="/tmp/state.json")


# ---- the embedded state file -------------------------------------------------------------------
def test_state_file_resolves_to_the_embedded_endpoint(aws, moto_endpoint, tmp_path):
    _, _, res = aws
    path = tmp_path / "state.json"
    write_state(path, moto_endpoint, res, "http://127.0.0.1:1/{z}/{x}/{y}.png")
    dep = resolve_embedded(path)
    assert dep.kind == "embedded" and dep.endpoint_url == moto_endpoint and dep.resources == res
    assert dep.tile_url_template.endswith("{y}.png")
    assert res.results_table in dep.client("dynamodb").list_tables()["TableNames"]


def test_missing_state_file_says_how_to_start_one(tmp_path):
    with pytest.raises(DeploymentError, match="looking-glass up"):
        resolve_embedded(tmp_path / "none.json")


def test_default_state_file_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("LG_EMBEDDED_STATE", str(tmp_path / "elsewhere.json"))
    with pytest.raises(DeploymentError, match="elsewhere.json not found"):
        resolve(stack=None, embedded=None)


@pytest.mark.parametrize("content", ["not json", json.dumps({"version": 99}), json.dumps({"version": 1, "pid": 1})])
def test_corrupt_state_file_is_refused(tmp_path, content):
    path = tmp_path / "state.json"
    path.write_text(content)
    with pytest.raises(DeploymentError, match="not valid"):
        resolve_embedded(path)


def test_state_file_of_a_dead_run_is_refused(aws, moto_endpoint, tmp_path):
    _, _, res = aws
    path = tmp_path / "state.json"
    write_state(path, moto_endpoint, res, "")
    state = json.loads(path.read_text())
    proc = __import__("subprocess").Popen(["true"])
    proc.wait()
    state["pid"] = proc.pid  # a process that has exited
    path.write_text(json.dumps(state))
    with pytest.raises(DeploymentError, match=f"pid {proc.pid}.*no longer running"):
        resolve_embedded(path)


def test_up_keeps_an_embedded_run_with_a_state_file_and_starts_workers_for_queued_work(tmp_path):
    """`looking-glass up`: the state file appears, its endpoint works, queued work gets a local
    worker (here one that exits at once on a bad setting, so no model is loaded), and the state
    file goes when the run stops."""
    state_path = tmp_path / "embedded.json"
    stop = threading.Event()
    ready = threading.Event()
    saved = dict(os.environ)
    thread = threading.Thread(
        target=run_embedded,
        args=(state_path, tmp_path / "run"),
        kwargs={"workers": 1, "ready": lambda state: ready.set(), "stop_event": stop, "poll_s": 0.2,
                "worker_env": {"LG_BATCH_SIZE": "0"}},
        daemon=True,
    )
    thread.start()
    try:
        assert ready.wait(60), "embedded run did not start"
        dep = resolve_embedded(state_path)
        sqs = dep.client("sqs")
        sqs.send_message(QueueUrl=dep.resources.tile_queue_url, MessageBody="{}")
        log = tmp_path / "run" / "logs" / "worker-queue-0.log"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (log.is_file() and "LG_BATCH_SIZE" in log.read_text()):
            time.sleep(0.2)
        assert "bad worker settings" in log.read_text()
    finally:
        stop.set()
        thread.join(60)
        os.environ.clear()
        os.environ.update(saved)
    assert not thread.is_alive()
    assert not state_path.exists()
