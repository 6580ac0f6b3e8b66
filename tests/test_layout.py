"""What the Lambda loads must not pull in TensorFlow; the launchers size work as documented."""

import subprocess
import sys
from decimal import Decimal

import boto3
from botocore.stub import Stubber

from looking_glass.pipeline.launchers import BatchLauncher
from looking_glass.pipeline.store import TileResult
from looking_glass.runtime.resources import TABLE_PARTITION_KEY, TABLE_SORT_KEY, TILE_SORT_PREFIX
from looking_glass.runtime.settings import EnumeratorSettings


def test_lambda_handler_imports_without_tensorflow():
    code = (
        "import sys; sys.path.insert(0, '.');"
        "import lambdas.tile_enumerator.handler, looking_glass.pipeline.enumerator, looking_glass.tiling.cover;"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'PIL', 'moto')];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_workers_are_sized_to_the_work_and_capped():
    s = EnumeratorSettings.from_env({"LG_WORKER_LAUNCHER": "local", "LG_TILES_PER_WORKER": "100", "LG_MAX_WORKERS": "4"})
    assert [s.workers_for(n) for n in (1, 100, 101, 350, 10_000)] == [1, 1, 2, 4, 4]


def test_batch_launcher_submits_an_array_job_sized_to_the_workers():
    client = boto3.client("batch", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    launcher = BatchLauncher(client, "queue", "jobdef")
    with Stubber(client) as stub:
        stub.add_response(
            "submit_job",
            {"jobName": "n", "jobId": "id-1"},
            {
                "jobName": "looking-glass-abc",
                "jobQueue": "queue",
                "jobDefinition": "jobdef",
                "containerOverrides": {"environment": [{"name": "LG_JOB_ID", "value": "abc"}]},
                "arrayProperties": {"size": 7},
            },
        )
        stub.add_response(
            "submit_job",
            {"jobName": "n", "jobId": "id-2"},
            {
                "jobName": "looking-glass-abc",
                "jobQueue": "queue",
                "jobDefinition": "jobdef",
                "containerOverrides": {"environment": [{"name": "LG_JOB_ID", "value": "abc"}]},
            },
        )
        assert launcher.launch("abc", 7) == "id-1"
        assert launcher.launch("abc", 1) == "id-2"  # Batch array jobs need at least 2 children


def test_tile_item_schema():
    item = TileResult(3, 4, 18, "q", "done", Decimal("12.345"), 99, mask_key="m").item(
        "job", {"model_id": "m", "model_version": "1", "imagery": "i", "threshold": Decimal("0.5")}
    )
    assert item[TABLE_PARTITION_KEY] == "job" and item[TABLE_SORT_KEY] == TILE_SORT_PREFIX + "q"
    assert {"quadkey", "z", "x", "y", "status", "building_area_m2", "building_pixels", "mask_key", "model_id"} <= set(item)
    assert "reason" not in item
