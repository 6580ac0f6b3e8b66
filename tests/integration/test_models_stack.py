"""``looking-glass models`` and ``models use`` on a deployed stack, and ``train --stack --wait``'s
registration: the registry is ``registry/`` of the stack's masks bucket (which the workers may
read), the active model is the parameter the Inference stack outputs (the one its job definition
names). Against moto with the stacks' outputs in CloudFormation (the fixture of test_train_stack)."""

from __future__ import annotations

import io
import json
import tarfile
import uuid

import boto3
import pytest
from conftest import model_copy, run_cli
from test_train_stack import create_stack, training_stack  # noqa: F401 -- the fixture

import looking_glass.cli.training as training_cli
from looking_glass.local.deployment import resolve_stack
from looking_glass.model import registry
from looking_glass.model.registry import parameter_name
from looking_glass.runtime import resources


def _model(folder, version: str):
    """A real model (a copy of the shipped one: register and use load it) as seg/VERSION."""
    return model_copy(folder, version, model_id="seg", validation={"val_iou": 0.5})


@pytest.fixture
def stack_with_parameter(training_stack, aws):  # noqa: F811
    name, training_bucket, _ = training_stack
    parameter = parameter_name(name)
    create_stack(f"{name}Monitoring", {resources.OUTPUT_ACTIVE_MODEL_PARAMETER: parameter})
    return name, training_bucket, aws[2].masks_bucket, parameter


def test_models_use_on_a_stack_sets_the_parameter_the_workers_read(stack_with_parameter, tmp_path, capsys):
    name, training_bucket, masks_bucket, parameter = stack_with_parameter
    assert run_cli(capsys, "models", "register", str(_model(tmp_path / "a", "v1")), "--stack", name)[0] == 0
    assert run_cli(capsys, "models", "register", str(_model(tmp_path / "b", "v2")), "--stack", name)[0] == 0
    listed = boto3.client("s3").list_objects_v2(Bucket=masks_bucket, Prefix="registry/seg/")["Contents"]
    assert {o["Key"] for o in listed} >= {"registry/seg/v1/model.keras", "registry/seg/v2/model.json"}
    assert boto3.client("s3").list_objects_v2(Bucket=training_bucket).get("KeyCount") == 0

    code, out, _ = run_cli(capsys, "models", "use", "v2", "--stack", name)
    assert code == 0 and "seg/v2" in out
    ssm = boto3.client("ssm")
    assert ssm.get_parameter(Name=parameter)["Parameter"]["Value"] == f"s3://{masks_bucket}/registry/seg/v2/model.keras"
    code, out, _ = run_cli(capsys, "models", "--stack", name, "--json")
    listing = json.loads(out)
    assert listing["parameter"] == parameter and [r["version"] for r in listing["models"] if r["active"]] == ["v2"]
    assert run_cli(capsys, "models", "use", "seg/v1", "--stack", name)[0] == 0  # going back
    assert ssm.get_parameter(Name=parameter)["Parameter"]["Value"].endswith("registry/seg/v1/model.keras")

    code, _, err = run_cli(capsys, "models", "use", "v9", "--stack", name)
    assert code == 2 and "no registered model version 'v9'" in err
    assert ssm.get_parameter(Name=parameter)["Parameter"]["Value"].endswith("registry/seg/v1/model.keras")

    code, out, _ = run_cli(capsys, "models", "use", "shipped", "--stack", name)  # back to the image's model
    shipped = registry.shipped_record().name  # the shipped model's id/version, from its sidecar
    assert code == 0 and shipped in out
    with pytest.raises(ssm.exceptions.ParameterNotFound):
        ssm.get_parameter(Name=parameter)
    listing = json.loads(run_cli(capsys, "models", "--stack", name, "--json")[1])
    assert [r["shipped"] for r in listing["models"] if r["active"]] == [True]


def test_models_use_is_refused_on_a_stack_that_pins_model_s3_uri(training_stack, tmp_path, capsys):  # noqa: F811
    name, _, _ = training_stack  # no ActiveModelParameterName output: model_s3_uri pins the model
    assert run_cli(capsys, "models", "register", str(_model(tmp_path / "a", "v1")), "--stack", name)[0] == 0
    code, out, _ = run_cli(capsys, "models", "--stack", name)
    assert code == 0 and "seg/v1" in out and "pinned by the stack's model_s3_uri" in out
    code, _, err = run_cli(capsys, "models", "use", "v1", "--stack", name)
    assert code == 2 and "model_s3_uri" in err and "ActiveModelParameterName" in err
    code, out, _ = run_cli(capsys, "models", "--stack", name, "--json")  # the pinned model runs, not the shipped one
    assert code == 0 and not any(r["active"] for r in json.loads(out)["models"])
    code, _, err = run_cli(capsys, "models", "use", "shipped", "--stack", name)
    assert code == 2 and "model_s3_uri" in err
    with pytest.raises(boto3.client("ssm").exceptions.ParameterNotFound):
        boto3.client("ssm").get_parameter(Name=parameter_name(name))


def test_train_wait_registers_the_job_model_in_the_masks_bucket(stack_with_parameter, tmp_path, capsys):
    name, training_bucket, masks_bucket, _ = stack_with_parameter
    model = _model(tmp_path / "trained", "job-1")
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        tar.add(model, arcname="model/model.keras")
        tar.add(model.with_suffix(".json"), arcname="model/model.json")
    key = f"models/job-{uuid.uuid4().hex[:6]}/output/model.tar.gz"
    boto3.client("s3").put_object(Bucket=training_bucket, Key=key, Body=archive.getvalue())
    output = json.dumps({"training": {"ModelArtifacts": {"S3ModelArtifacts": f"s3://{training_bucket}/{key}"}}})
    training_cli._register_output(resolve_stack(name), output)
    assert f"registered seg/job-1: s3://{masks_bucket}/registry/seg/job-1/model.keras" in capsys.readouterr().err
    training_cli._register_output(resolve_stack(name), "{}")  # no artifact named: nothing registered
    assert "nothing registered" in capsys.readouterr().err
