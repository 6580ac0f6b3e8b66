"""Recovery after the embedded run gave up on its workers (issue 12 of the seventh session): a
registered model that cannot be loaded is made active (written behind ``models register``/``use``,
which refuse it now, as by a Looking Glass from before their check), a job's workers exit 3 three times in a
row and the job FAILS; `models use shipped` lets the run start workers again (it stayed silent
for good before), `retry JOB` is not refused for the work still queued, and once every tile is
done the job is COMPLETE with its failure reason kept only as ``earlier_reason``. Real
enumerator, real worker processes, the real shipped model; the job's record then names the
shipped model that processed its tiles, not the broken one it was submitted with."""

from __future__ import annotations

import json
import time

import pytest
from conftest import SAMPLE_POLYGON, embedded_thread, geojson_bytes, run_cli

from looking_glass.local.deployment import resolve_embedded
from looking_glass.model.identity import shipped_identity
from looking_glass.model.registry import MODEL_FILE, SIDECAR_FILE, model_prefix, parameter_name, shipped_record
from looking_glass.model.segmenter import SHIPPED_MODEL
from looking_glass.pipeline.launchers import MAX_FAILURES_IN_A_ROW
from looking_glass.pipeline.store import ResultsStore

pytestmark = pytest.mark.e2e


def _broken_model(tmp):
    """A model.keras that is not a Keras file (the sidecar is the shipped one's)."""
    folder = tmp / "broken"
    folder.mkdir()
    model = folder / "model.keras"
    model.write_bytes(b"not a keras zip archive")
    meta = json.loads(SHIPPED_MODEL.with_suffix(".json").read_text())
    meta.pop("onnx", None)
    meta.update({"model_id": "e2e-broken", "version": "1"})
    model.with_suffix(".json").write_text(json.dumps(meta))
    return model


def _active_behind_the_checks(dep, model) -> None:
    """``model`` registered as ``e2e-broken/1`` and made active as a Looking Glass before the
    model-path check did (``models register`` and ``models use`` refuse it now): its files
    written to the registry and the active-model parameter set directly."""
    bucket = dep.resources.masks_bucket
    prefix = model_prefix("e2e-broken", "1")
    uri = f"s3://{bucket}/{prefix}{MODEL_FILE}"
    meta = {**json.loads(model.with_suffix(".json").read_text()), "registry_uri": uri}
    s3 = dep.client("s3")
    s3.put_object(Bucket=bucket, Key=prefix + MODEL_FILE, Body=model.read_bytes())
    s3.put_object(Bucket=bucket, Key=prefix + SIDECAR_FILE, Body=json.dumps(meta).encode())
    dep.client("ssm").put_parameter(Name=parameter_name(bucket), Value=uri, Type="String", Overwrite=True)


def _wait(check, timeout_s: float = 300.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.5)
    raise AssertionError("timed out")


def test_a_retry_after_the_workers_gave_up_runs_the_job_to_complete(tmp_path, capsys):
    with embedded_thread(tmp_path) as state:
        dep = resolve_embedded(state)
        store = ResultsStore(dep.client("dynamodb"), dep.resources.results_table)
        broken = _broken_model(tmp_path)
        code, _, err = run_cli(capsys, "models", "register", str(broken))
        assert code == 2 and "not a Keras model file" in err, err  # the check keeps it out of the registry now
        _active_behind_the_checks(dep, broken)
        code, _, err = run_cli(capsys, "models", "use", "e2e-broken/1")
        assert code == 2 and "not made active" in err, err  # and would not make it active
        aoi = tmp_path / "aoi.geojson"
        aoi.write_bytes(geojson_bytes(SAMPLE_POLYGON))
        code, out, err = run_cli(capsys, "submit", str(aoi))
        assert code == 0, err
        job_id = out.strip()
        failed = _wait(lambda: (j := store.get_job(job_id)) and j["status"] == "FAILED" and j)
        assert f"workers failed {MAX_FAILURES_IN_A_ROW} times in a row" in failed["reason"]
        assert "cannot be loaded" in failed["reason"] and int(failed.get("tiles_done", 0)) == 0

        code, _, err = run_cli(capsys, "models", "use", "shipped")
        assert code == 0, err
        code, out, err = run_cli(capsys, "retry", job_id)  # the job's units are still queued
        assert code == 0, err
        assert "tiles enqueued" in out

        job = _wait(lambda: (j := store.get_job(job_id)) and j["status"] == "COMPLETE" and j)
        total = int(job["tiles_total"])
        assert int(job["tiles_done"]) == int(job["tiles_final"]) == total > 0
        assert "reason" not in job and "cannot be loaded" in job["earlier_reason"]
        # the record names the model that processed the tiles (the broken one did none)
        assert job["model"] == shipped_identity() and "earlier_models" not in job
        assert {(i.get("model_id"), i.get("model_version")) for i in store.tile_items(job_id)} == {
            (shipped_record().model_id, shipped_record().version)}
        code, out, _ = run_cli(capsys, "jobs")
        row = next(line for line in out.splitlines() if line.startswith(job_id))
        assert code == 0 and "COMPLETE" in row and f"{total}/{total} (100%)" in row
        assert row.split()[-1] == shipped_record().name and "e2e-broken" not in row
        code, out, _ = run_cli(capsys, "status", job_id)
        lines = {line.split()[0]: line.split(None, 1)[1] for line in out.splitlines() if line.strip()}
        assert lines["status"] == "COMPLETE" and "reason" not in lines and "cannot be loaded" in lines["earlier_reason"]
