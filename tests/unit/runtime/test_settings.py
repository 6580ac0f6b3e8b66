import pytest

from looking_glass.runtime.settings import EnumeratorSettings, SettingsError, WorkerSettings

WORKER_OK = {"LG_TILE_URL_TEMPLATE": "http://tiles.local/{z}/{x}/{y}.png"}


def test_defaults():
    w = WorkerSettings.from_env(WORKER_OK)
    assert (w.batch_size, w.threshold, w.write_masks) == (32, 0.5, True)
    assert (w.xla, w.mixed_precision) == (False, False)
    fast = WorkerSettings.from_env({**WORKER_OK, "LG_XLA": "true", "LG_MIXED_PRECISION": "1"})
    assert (fast.xla, fast.mixed_precision) == (True, True)
    e = EnumeratorSettings.from_env({"LG_WORKER_LAUNCHER": "local"})
    assert (e.tiles_per_message, e.max_tiles_per_job) == (64, 5_000_000)


@pytest.mark.parametrize(
    "env, message",
    [
        ({}, "LG_TILE_URL_TEMPLATE is required"),
        ({"LG_TILE_URL_TEMPLATE": "ftp://x/{z}/{x}/{y}"}, "not an http(s) URL"),
        ({"LG_TILE_URL_TEMPLATE": "http://x/{z}/{x}.png"}, "lacks {y}"),
        ({**WORKER_OK, "LG_BATCH_SIZE": "many"}, "LG_BATCH_SIZE='many' is not an integer"),
        ({**WORKER_OK, "LG_BATCH_SIZE": "0"}, "LG_BATCH_SIZE=0 is outside"),
        ({**WORKER_OK, "LG_THRESHOLD": "1.5"}, "LG_THRESHOLD=1.5 is outside"),
        ({**WORKER_OK, "LG_WRITE_MASKS": "maybe"}, "LG_WRITE_MASKS='maybe' is not a boolean"),
        ({**WORKER_OK, "LG_XLA": "fast"}, "LG_XLA='fast' is not a boolean"),
        ({**WORKER_OK, "LG_MIXED_PRECISION": "fp16"}, "LG_MIXED_PRECISION='fp16' is not a boolean"),
    ],
)
def test_bad_worker_settings_name_the_variable(env, message):
    with pytest.raises(SettingsError) as err:
        WorkerSettings.from_env(env)
    assert message in str(err.value)


@pytest.mark.parametrize(
    "env, message",
    [
        ({"LG_WORKER_LAUNCHER": "k8s"}, "LG_WORKER_LAUNCHER='k8s' is not one of"),
        ({"LG_WORKER_LAUNCHER": "batch"}, "LG_BATCH_JOB_QUEUE and LG_BATCH_JOB_DEFINITION are required"),
        ({"LG_WORKER_LAUNCHER": "local", "LG_TILES_PER_MESSAGE": "20000"}, "LG_TILES_PER_MESSAGE=20000 is outside"),
    ],
)
def test_bad_enumerator_settings_name_the_variable(env, message):
    with pytest.raises(SettingsError) as err:
        EnumeratorSettings.from_env(env)
    assert message in str(err.value)


def test_worker_exits_2_on_bad_settings(tmp_path):
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "looking_glass.pipeline.worker_main"],
        env={"PATH": "/usr/bin:/bin", "LG_TILE_URL_TEMPLATE": "nope"},
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "bad worker settings" in proc.stdout


def test_worker_exits_3_when_the_model_cannot_be_loaded(tmp_path):
    import os
    import subprocess
    import sys

    from looking_glass.runtime.resources import DeployedResources

    resources = DeployedResources("t", "m", "r", "http://127.0.0.1:9/q", "http://127.0.0.1:9/d")
    env = {**os.environ, **resources.to_env(), **WORKER_OK, "LG_MODEL_PATH": str(tmp_path / "nope.keras")}
    proc = subprocess.run([sys.executable, "-m", "looking_glass.pipeline.worker_main"], env=env, capture_output=True, text=True)
    assert proc.returncode == 3 and "cannot load model" in proc.stdout and "nope.keras" in proc.stdout
