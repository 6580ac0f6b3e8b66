"""`looking-glass train --stack NAME`: dataset upload to the training bucket and a state machine
execution, against moto with the stack's outputs in CloudFormation (as the CDK stacks declare
them). moto accepts the execution but runs nothing, so the test checks what was sent."""

from __future__ import annotations

import json
import threading
import time
import uuid

import boto3
import pytest
from conftest import create_output_stack, make_training_dataset

from looking_glass.cli.main import main
from looking_glass.runtime import resources
from looking_glass.training.contract import METRIC_DEFINITIONS, TRAIN_PREFIX, VALIDATION_PREFIX

PASS_DEFINITION = json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": True}}})


create_stack = create_output_stack


@pytest.fixture
def training_stack(aws):
    """A deployment named like the CDK app's stacks, with a training bucket and state machine."""
    _, _, res = aws
    name = f"Train{uuid.uuid4().hex[:8]}"
    bucket = f"train-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    machine = boto3.client("stepfunctions").create_state_machine(
        name=f"{name}-training", definition=PASS_DEFINITION, roleArn="arn:aws:iam::123456789012:role/sfn"
    )["stateMachineArn"]
    create_stack(f"{name}Storage", {
        resources.OUTPUT_TRIGGER_BUCKET: res.trigger_bucket,
        resources.OUTPUT_MASKS_BUCKET: res.masks_bucket,
        resources.OUTPUT_RESULTS_TABLE: res.results_table,
    })
    create_stack(f"{name}Inference", {
        resources.OUTPUT_TILE_QUEUE_URL: res.tile_queue_url,
        resources.OUTPUT_TILE_DLQ_URL: res.tile_dlq_url,
    })
    create_stack(f"{name}Training", {
        resources.OUTPUT_TRAINING_BUCKET: bucket,
        resources.OUTPUT_TRAINING_STATE_MACHINE: machine,
    })
    return name, bucket, machine


make_dataset = make_training_dataset


def keys(bucket: str) -> set[str]:
    answer = boto3.client("s3").list_objects_v2(Bucket=bucket)
    return {obj["Key"] for obj in answer.get("Contents", [])}


def executions(machine: str) -> list[dict]:
    sfn = boto3.client("stepfunctions")
    return [
        sfn.describe_execution(executionArn=e["executionArn"])
        for e in sfn.list_executions(stateMachineArn=machine)["executions"]
    ]


def test_uploads_each_channel_and_starts_the_state_machine(training_stack, tmp_path, capsys):
    name, bucket, machine = training_stack
    data = make_dataset(tmp_path / "chips")
    code = main(["train", "--stack", name, "--data", str(data), "--name", "run-1",
                 "--hyperparameters", json.dumps({"epochs": 2, "learning_rate": 0.001, "head": "binary"})])
    assert code == 0
    arn = capsys.readouterr().out.strip()
    assert arn.endswith(":run-1")
    assert keys(bucket) == {
        f"{TRAIN_PREFIX}manifest.json", f"{TRAIN_PREFIX}train/shard-00000.npz", f"{TRAIN_PREFIX}train/shard-00001.npz",
        f"{VALIDATION_PREFIX}manifest.json", f"{VALIDATION_PREFIX}validation/shard-00000.npz",
    }
    (execution,) = executions(machine)
    # SageMaker wants every hyperparameter as a string
    assert json.loads(execution["input"]) == {"hyperparameters": {"epochs": "2", "learning_rate": "0.001", "head": "binary"}}


def test_a_second_upload_removes_shards_the_new_dataset_does_not_have(training_stack, tmp_path):
    name, bucket, _ = training_stack
    assert main(["train", "--stack", name, "--data", str(make_dataset(tmp_path / "big", train_shards=3))]) == 0
    assert main(["train", "--stack", name, "--data", str(make_dataset(tmp_path / "small", train_shards=1))]) == 0
    assert sorted(k for k in keys(bucket) if k.startswith(f"{TRAIN_PREFIX}train/")) == [f"{TRAIN_PREFIX}train/shard-00000.npz"]


def test_without_data_it_trains_on_what_the_bucket_holds(training_stack, capsys):
    name, bucket, machine = training_stack
    assert main(["train", "--stack", name]) == 0
    assert keys(bucket) == set()
    (execution,) = executions(machine)
    assert json.loads(execution["input"]) == {}


@pytest.mark.parametrize(
    "hyperparameters, message",
    [
        ({"epochs": 0}, "epochs"),
        ({"no_such_key": 1}, "unknown hyperparameter"),
        ({"epochs": [1, 2]}, "hyperparameter .epochs.: expected an integer, got \\[1, 2\\]"),
        ({"model_id": {"a": 1}}, "hyperparameter .model_id.: expected a non-empty string"),
        ("[1]", "must be a JSON object"),
    ],
)
def test_bad_hyperparameters_are_refused_before_anything_is_uploaded(training_stack, tmp_path, hyperparameters, message):
    name, bucket, machine = training_stack
    text = hyperparameters if isinstance(hyperparameters, str) else json.dumps(hyperparameters)
    with pytest.raises(SystemExit, match=message):
        main(["train", "--stack", name, "--data", str(make_dataset(tmp_path / "d")), "--hyperparameters", text])
    assert keys(bucket) == set() and executions(machine) == []


def test_a_folder_that_is_not_a_prepared_dataset_is_refused(training_stack, tmp_path):
    name, bucket, machine = training_stack
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match="no manifest.json"):
        main(["train", "--stack", name, "--data", str(tmp_path / "empty")])
    no_shards = make_dataset(tmp_path / "none", train_shards=0)
    with pytest.raises(SystemExit, match="nothing to train on"):
        main(["train", "--stack", name, "--data", str(no_shards)])
    assert keys(bucket) == set() and executions(machine) == []


def test_a_stack_without_its_training_stack_says_so(aws):
    _, _, res = aws
    name = f"NoTrain{uuid.uuid4().hex[:8]}"
    create_stack(f"{name}Storage", {
        resources.OUTPUT_TRIGGER_BUCKET: res.trigger_bucket,
        resources.OUTPUT_MASKS_BUCKET: res.masks_bucket,
        resources.OUTPUT_RESULTS_TABLE: res.results_table,
    })
    create_stack(f"{name}Inference", {
        resources.OUTPUT_TILE_QUEUE_URL: res.tile_queue_url,
        resources.OUTPUT_TILE_DLQ_URL: res.tile_dlq_url,
    })
    with pytest.raises(SystemExit, match="no training outputs"):
        main(["train", "--stack", name])


def test_invalid_run_names_and_local_only_options_are_refused(training_stack):
    name, _, machine = training_stack
    with pytest.raises(SystemExit, match="invalid run name"):
        main(["train", "--stack", name, "--name", "has spaces"])
    with pytest.raises(SystemExit, match="--root is for --local"):
        main(["train", "--stack", name, "--root", "/tmp/x"])
    assert executions(machine) == []


def test_wait_follows_the_execution_until_it_is_final(training_stack, capsys):
    # moto keeps executions RUNNING; stopping it from outside makes it final (ABORTED).
    name, _, machine = training_stack
    sfn = boto3.client("stepfunctions")

    def stop_when_started():
        for _ in range(200):
            running = sfn.list_executions(stateMachineArn=machine)["executions"]
            if running:
                sfn.stop_execution(executionArn=running[0]["executionArn"], cause="test")
                return
            time.sleep(0.05)

    stopper = threading.Thread(target=stop_when_started)
    stopper.start()
    code = main(["train", "--stack", name, "--wait", "--poll-seconds", "0.2"])
    stopper.join()
    report = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert report["status"] == "ABORTED"
    assert code == 1


def test_the_entry_point_and_the_stack_share_the_metric_definitions():
    from looking_glass.training.loop import METRIC_DEFINITIONS as entry_point_definitions
    from looking_glass.training.loop import metric_line

    assert entry_point_definitions is METRIC_DEFINITIONS
    import re

    line = metric_line(3, 0.1234, {"val_loss": 0.2345, "val_iou": 0.8123, "val_f1": 0.89}, 41.2)
    found = {d["Name"]: re.search(d["Regex"], line) for d in METRIC_DEFINITIONS}
    assert float(found["train:loss"].group(1)) == pytest.approx(0.1234)
    assert float(found["validation:iou"].group(1)) == pytest.approx(0.8123)
    assert int(found["epoch"].group(1)) == 3
