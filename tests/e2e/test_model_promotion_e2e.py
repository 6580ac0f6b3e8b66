"""Model promotion on a live embedded run: register two versions, `models use` the new one, submit
and find it in every tile's provenance; `models use` the old one: the next job's workers run it
(real enumerator, real worker processes; the two versions are copies of
the shipped model with their own sidecars, standing in for a fine-tune)."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
from conftest import SAMPLE_POLYGON, geojson_bytes, run_cli

from looking_glass.local.deployment import resolve_embedded
from looking_glass.model.segmenter import SHIPPED_MODEL
from looking_glass.pipeline.store import ResultsStore

pytestmark = pytest.mark.e2e


def _version(tmp, version: str):
    folder = tmp / version
    folder.mkdir()
    model = folder / "model.keras"
    shutil.copy(SHIPPED_MODEL, model)
    meta = json.loads(SHIPPED_MODEL.with_suffix(".json").read_text())
    meta.pop("onnx", None)
    meta.update({"model_id": "e2e-buildings", "version": version})
    model.with_suffix(".json").write_text(json.dumps(meta))
    return model


def _versions(store, job):
    return {item.get("model_version") for item in store.tile_items(job) if item.get("status") == "done"}


def _wait_for_workers_to_exit(timeout_s: float = 120.0) -> None:
    """``models use`` applies to workers started after it: wait until the embedded run's earlier
    workers (they exit 3 s after their queue is empty) are gone, read from /proc."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        alive = []
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                if b"looking_glass.pipeline.worker_main" in cmdline.read_bytes():
                    alive.append(cmdline)
            except OSError:
                continue
        if not alive:
            return
        time.sleep(0.5)
    raise AssertionError("the embedded run's workers did not exit")


def test_models_use_submit_then_go_back_and_retry(embedded_up, capsys):
    tmp, state = embedded_up
    for version in ("v1", "v2"):
        code, _, err = run_cli(capsys, "models", "register", str(_version(tmp, version)))
        assert code == 0, err
    assert run_cli(capsys, "models", "use", "v2")[0] == 0
    code, out, _ = run_cli(capsys, "models")
    assert any(line.startswith("*") and "e2e-buildings/v2" in line for line in out.splitlines())

    aoi = tmp / "kigali-tiny.geojson"
    aoi.write_bytes(geojson_bytes(SAMPLE_POLYGON))
    code, out, err = run_cli(capsys, "submit", str(aoi), "--wait", "--timeout", "300")
    assert code == 0 and "COMPLETE" in err, err
    job = out.strip()
    dep = resolve_embedded(state)
    store = ResultsStore(dep.client("dynamodb"), dep.resources.results_table)
    assert _versions(store, job) == {"v2"}
    # The same AOI, imagery and model again: the job that holds the results (issue 18).
    code, out, err = run_cli(capsys, "submit", str(aoi))
    assert code == 0 and out.strip() == job and f"job {job} already holds the results" in err

    assert run_cli(capsys, "models", "use", "nope")[0] == 2  # refused, nothing changed
    assert run_cli(capsys, "models", "use", "e2e-buildings/v1")[0] == 0
    _wait_for_workers_to_exit()
    # Workers started from now on run v1: a new job (retry re-enqueues only unfinished tiles, and
    # its workers start the same way).
    # The same AOI after `models use`: a new job (its identity holds the active model).
    code, out, err = run_cli(capsys, "submit", str(aoi), "--wait", "--timeout", "300")
    assert code == 0 and "COMPLETE" in err, err
    assert out.strip() != job and store.get_job(out.strip())["model"].endswith("/v1/model.keras")
    assert _versions(store, out.strip()) == {"v1"}
    assert _versions(store, job) == {"v2"}
