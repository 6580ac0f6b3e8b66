"""Shared fixtures: a real moto server on 127.0.0.1, the project's resources on it, and the
synthetic tile server. Each test module gets fresh resources under its own name prefix."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import uuid
from pathlib import Path

import boto3
import numpy as np
import pytest

from looking_glass.local.embedded import LOCAL_AWS_ENV
from looking_glass.local.tileserver import SyntheticTileServer
from looking_glass.runtime.resources import ResourceNames, create_embedded_resources

# Paths every test layer uses (tests/unit/..., tests/integration, tests/e2e, tests/infra).
TESTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TESTS_DIR.parent
SPACENET_SAMPLE = TESTS_DIR / "data" / "spacenet_atlanta_sample"

SAMPLE_POLYGON = {
    "type": "Polygon",
    "coordinates": [[[30.0600, -1.9500], [30.0625, -1.9500], [30.0625, -1.9480], [30.0600, -1.9480], [30.0600, -1.9500]]],
}


@pytest.fixture(scope="session")
def moto_endpoint():
    from moto.server import ThreadedMotoServer

    from looking_glass.local.moto_dynamodb import serialize_dynamodb

    serialize_dynamodb()  # as DynamoDB: one write at a time per item (tile packs rely on it)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    saved = {k: os.environ.get(k) for k in [*LOCAL_AWS_ENV, "AWS_ENDPOINT_URL"]}
    os.environ.update({**LOCAL_AWS_ENV, "AWS_ENDPOINT_URL": f"http://{host}:{port}"})
    yield f"http://{host}:{port}"
    server.stop()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture
def aws(moto_endpoint):
    """A boto3 session on the moto server and a fresh set of the project's resources."""
    session = boto3.session.Session()
    names = ResourceNames.for_prefix(f"t{uuid.uuid4().hex[:10]}")
    resources = create_embedded_resources(session, names)
    return session, names, resources


@pytest.fixture
def batch_queue(aws):
    """A job queue (on an UNMANAGED compute environment) and a worker job definition in moto's
    Batch, as a :class:`BatchLauncher` on them (moto runs no container without Docker)."""
    import time

    from looking_glass.pipeline.launchers import BatchLauncher

    session, _, _ = aws
    role = session.client("iam").create_role(RoleName=f"batch-{time.monotonic_ns()}", AssumeRolePolicyDocument="{}")
    batch = session.client("batch")
    ce = batch.create_compute_environment(computeEnvironmentName=f"lg-ce-{time.monotonic_ns()}", type="UNMANAGED",
                                          state="ENABLED", serviceRole=role["Role"]["Arn"])["computeEnvironmentArn"]
    queue = batch.create_job_queue(jobQueueName=f"lg-q-{time.monotonic_ns()}", state="ENABLED", priority=1,
                                   computeEnvironmentOrder=[{"order": 1, "computeEnvironment": ce}])["jobQueueArn"]
    definition = batch.register_job_definition(
        jobDefinitionName=f"lg-worker-{time.monotonic_ns()}", type="container",
        containerProperties={"image": "looking-glass-worker", "vcpus": 1, "memory": 512})["jobDefinitionArn"]
    return BatchLauncher(batch, queue, definition)


@pytest.fixture(scope="session")
def tile_server():
    with SyntheticTileServer() as server:
        yield server


class RecordingLauncher:
    """Stands in for worker processes where a test is about the enumerator alone: records each
    ``launch(job_id, workers)`` in ``calls``."""

    def __init__(self):
        self.calls = []

    def launch(self, job_id, workers):
        """Record the launch; returns a launch id like a launcher's (``recorded-N``)."""
        self.calls.append((job_id, workers))
        return f"recorded-{len(self.calls)}"


@contextlib.contextmanager
def enumerator_env_with(monkeypatch, resources, **settings):
    """The enumerator handler's environment for a test (through ``monkeypatch``): the variables
    of ``resources`` (a :class:`DeployedResources`), the local launcher, and ``settings`` (e.g.
    ``LG_TILES_PER_WORKER=25``); yields the :class:`RecordingLauncher` registered meanwhile."""
    from looking_glass.pipeline.launchers import register_local_launcher

    for key, value in resources.to_env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("LG_WORKER_LAUNCHER", "local")
    for key, value in settings.items():
        monkeypatch.setenv(key, str(value))
    launcher = RecordingLauncher()
    register_local_launcher(launcher)
    try:
        yield launcher
    finally:
        register_local_launcher(None)


@contextlib.contextmanager
def embedded_thread(tmp: Path, **kwargs):
    """``looking-glass up`` in a thread (one worker) in ``tmp``, with ``kwargs`` for
    ``run_embedded`` (e.g. ``imagery_sources``): yields its state file, which LG_EMBEDDED_STATE
    names meanwhile; stops it and restores the environment after."""
    import threading

    from looking_glass.local.deployment import run_embedded

    state = tmp / "embedded.json"
    stop, ready = threading.Event(), threading.Event()
    saved = dict(os.environ)
    thread = threading.Thread(
        target=run_embedded, args=(state, tmp / "run"),
        kwargs={"workers": 1, "ready": lambda s: ready.set(), "stop_event": stop, "poll_s": 0.5, **kwargs}, daemon=True,
    )
    thread.start()
    assert ready.wait(60)
    os.environ["LG_EMBEDDED_STATE"] = str(state)
    try:
        yield state
    finally:
        stop.set()
        thread.join(60)
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(scope="module")
def embedded_up(tmp_path_factory):
    """A live embedded run (``looking-glass up`` in a thread, one worker) for one test module:
    yields (its temporary folder, its state file); LG_EMBEDDED_STATE points at it meanwhile."""
    tmp = tmp_path_factory.mktemp("up")
    with embedded_thread(tmp) as state:
        yield tmp, state


def results_by_x(capsys, job: str) -> dict[int, dict]:
    """The job's per-tile CSV rows (``results JOB --format csv``) by tile column."""
    import csv
    import io

    code, out, err = run_cli(capsys, "results", job, "--format", "csv")
    assert code == 0, err
    return {int(r["x"]): r for r in csv.DictReader(io.StringIO(out))}


def model_copy(folder: Path, version: str, extra: bytes = b"", model_id: str = "trial", **fields) -> Path:
    """``folder/model.keras``: the shipped Keras file (``extra`` bytes appended: other weights), a
    real model that the model-path check loads, with a sidecar naming ``model_id`` and ``version``
    (other sidecar ``fields`` set as given; the ONNX record dropped, as no export lies beside the
    copy); ``folder`` is created if need be."""
    from looking_glass.model.segmenter import SHIPPED_MODEL

    folder.mkdir(parents=True, exist_ok=True)
    model = folder / "model.keras"
    model.write_bytes(SHIPPED_MODEL.read_bytes() + extra)
    meta = json.loads(SHIPPED_MODEL.with_suffix(".json").read_text())
    meta.pop("onnx", None)
    meta.update({**fields, "model_id": model_id, "version": version})
    model.with_suffix(".json").write_text(json.dumps(meta))
    return model


def geojson_bytes(doc) -> bytes:
    return json.dumps(doc).encode()


def drain(sqs, queue_url: str, wait: int = 0) -> list[dict]:
    """Receive every visible message of a queue (without deleting)."""
    out = []
    while True:
        msgs = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=wait, VisibilityTimeout=300
        ).get("Messages", [])
        if not msgs:
            return out
        out.extend(msgs)


def queued(sqs, queue_url: str) -> int:
    """Messages in a queue, visible or in flight."""
    attrs = sqs.get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])


@pytest.fixture
def fault_tiles():
    """A synthetic tile server of the test's own, whose tiles can be told to fail
    (``set_fault``; see ``looking_glass.local.tileserver``) and which records every tile request
    (``requests_for``). Without faults it serves as the usual server does."""
    with SyntheticTileServer() as server:
        yield server.record_requests()


def create_output_stack(name: str, outputs: dict[str, str]) -> None:
    """A CloudFormation stack in moto with just these outputs (and one marker queue): what
    ``--stack NAME`` reads, without the stacks' resources."""
    template = {
        "Resources": {"Marker": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": f"m-{uuid.uuid4().hex[:12]}"}}},
        "Outputs": {key: {"Value": value} for key, value in outputs.items()},
    }
    boto3.client("cloudformation").create_stack(StackName=name, TemplateBody=json.dumps(template))


def make_training_dataset(path, train_shards=2, validation_shards=1):
    """The layout of `prepare`/`synth-data`: manifest.json plus shards per split."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "manifest.json").write_text(json.dumps({"format": "looking-glass-chips", "chip_size": 8,
                                                    "counts": {"train": train_shards, "validation": validation_shards}}))
    for split, count in (("train", train_shards), ("validation", validation_shards)):
        (path / split).mkdir(exist_ok=True)
        for i in range(count):
            np.savez(path / split / f"shard-{i:05d}.npz", images=np.zeros((1, 8, 8, 3), np.uint8))
    return path


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    """Run ``looking-glass ARGV`` in process; (exit code, stdout, stderr)."""
    try:
        from looking_glass.cli.main import main

        code = main(list(argv))
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
        if isinstance(exc.code, str):
            print(exc.code, file=__import__("sys").stderr)
    out = capsys.readouterr()
    return code, out.out, out.err


CHROMIUM = os.environ.get("LG_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


def browser_or_skip():
    """Headless Chromium, or a skip outside CI (in CI a missing browser fails the test)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    if CHROMIUM is None or sync_playwright is None:
        why = "Chromium (apt-get install chromium) and playwright (pip install -e '.[dev]') are needed"
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    return sync_playwright
