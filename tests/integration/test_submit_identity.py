"""`submit` and job identity against moto: the very same AOI, imagery and model name one job
(resubmitting says which and uploads nothing), `--rerun`, another `--imagery` or another active
model make a new one; `--imagery NAME` is checked against the embedded run's registry and,
without an AOI, uses the source's footprint."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from conftest import model_copy, run_cli
from test_results_cli import X0, Y0, block_aoi, env  # noqa: F401 - a fixture

from looking_glass.local.deployment import write_state
from looking_glass.model.identity import file_identity, shipped_identity
from looking_glass.model.registry import parameter_name
from looking_glass.pipeline.store import COMPLETE
from looking_glass.runtime import resources
from looking_glass.runtime.imagery_sources import parse_sources

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "imagery"))
from test_mosaic import TILE_SIZE, X, Y, write_tif  # noqa: E402


@pytest.fixture
def registry(env, moto_endpoint, tmp_path, monkeypatch):  # noqa: F811
    """The embedded state file registering a GeoTIFF 'scene' and a template 'osm'."""
    scene = write_tif(tmp_path / "scene.tif", 100, 0, 2 * TILE_SIZE, date="2021:01:01 00:00:00")
    sources = parse_sources({"scene": str(scene), "osm": "https://tiles.example/{z}/{x}/{y}.png"})
    write_state(Path(env["state"]), moto_endpoint, env["res"], "http://127.0.0.1:9/{z}/{x}/{y}.png", sources)
    return env


def objects(deployment) -> list[str]:
    listed = deployment["session"].client("s3").list_objects_v2(Bucket=deployment["res"].trigger_bucket)
    return sorted(o["Key"] for o in listed.get("Contents", []))


def test_resubmitting_the_same_inputs_names_the_job_that_holds_them(registry, capsys, tmp_path):
    aoi = tmp_path / "block.geojson"
    aoi.write_bytes(block_aoi(X, Y, 2, 1))  # the tiles of 'scene' (submit checks the AOI meets them)
    code, out, _ = run_cli(capsys, "submit", str(aoi), "--imagery", "scene")
    assert code == 0
    first = out.strip()
    # As the enumerator leaves it:
    registry["store"].create_job(first, {"status": COMPLETE, "tiles_total": 2, "imagery": "scene"})
    created = registry["store"].get_job(first)["created_at"]
    code, out, err = run_cli(capsys, "submit", str(aoi), "--imagery", "scene")
    assert code == 0 and out.strip() == first
    assert f"job {first} already holds the results of this AOI, imagery and model (COMPLETE, submitted {created})" in err
    assert "--rerun makes a new job" in err
    code, out, _ = run_cli(capsys, "submit", str(aoi), "--imagery", "scene", "--rerun")
    assert code == 0 and out.strip() != first
    code, out, _ = run_cli(capsys, "submit", str(aoi))  # the default imagery: another job
    assert code == 0 and out.strip() != first
    uploaded = json.loads(registry["session"].client("s3").get_object(
        Bucket=registry["res"].trigger_bucket, Key=f"{resources.TRIGGER_PREFIX}block.geojson")["Body"].read())
    assert uploaded["looking_glass"] == {"model": shipped_identity()}  # the model that runs, named


def test_a_new_active_model_is_a_new_job(registry, capsys, tmp_path):
    aoi = tmp_path / "block.geojson"
    aoi.write_bytes(block_aoi(X0, Y0, 1, 1))
    _, before, _ = run_cli(capsys, "submit", str(aoi))
    ssm = registry["session"].client("ssm")
    ssm.put_parameter(Name=parameter_name(registry["res"].masks_bucket), Value="s3://m/registry/m/2/model.keras",
                      Type="String", Overwrite=True)
    _, after, _ = run_cli(capsys, "submit", str(aoi))
    assert before.strip() != after.strip()
    body = registry["session"].client("s3").get_object(
        Bucket=registry["res"].trigger_bucket, Key=f"{resources.TRIGGER_PREFIX}block.geojson")["Body"].read()
    assert json.loads(body)["looking_glass"]["model"] == "s3://m/registry/m/2/model.keras"


def test_unknown_and_malformed_imagery_names_are_refused_before_upload(registry, capsys, tmp_path):
    aoi = tmp_path / "block.geojson"
    aoi.write_bytes(block_aoi(X0, Y0, 1, 1))
    code, _, err = run_cli(capsys, "submit", str(aoi), "--imagery", "nowhere")
    assert code == 2
    assert "unknown imagery source 'nowhere': not registered with this deployment (registered: default, osm, scene)" in err
    code, _, err = run_cli(capsys, "submit", str(aoi), "--imagery", "https://evil/{z}/{x}/{y}", "--stack", registry["stack"])
    assert code == 2 and "--imagery 'https://evil/{z}/{x}/{y}': use 1-64 letters" in err
    assert objects(registry) == []


def test_submit_imagery_without_an_aoi_uses_the_footprint(registry, capsys):
    code, out, err = run_cli(capsys, "submit", "--imagery", "scene")
    assert code == 0, err
    assert "'scene-footprint' (2 zoom-18 tiles)" in err  # the image covers exactly two tiles
    assert objects(registry) == [f"{resources.TRIGGER_PREFIX}scene-footprint.geojson"]
    code, _, err = run_cli(capsys, "submit", "--imagery", "osm")
    assert code == 2 and "'osm' is a URL template, which has no extent: give an AOI file" in err
    code, _, err = run_cli(capsys, "submit")
    assert code == 2 and "give an AOI file, or --imagery NAME" in err
    # a stack deployed before its ImagerySources output: no registry to read the footprint from
    code, _, err = run_cli(capsys, "submit", "--imagery", "scene", "--stack", registry["stack"])
    assert code == 2 and "is not known here (deployed before its ImagerySources output" in err


def test_retry_enqueues_the_jobs_own_imagery_source(registry, capsys):
    from conftest import drain
    from test_results_cli import add_job

    from looking_glass.pipeline.workunits import parse_work_unit

    job = add_job(registry, {(0, 0): ("done", "1", None), (1, 0): ("failed", "0", "x")}, w=2, h=1)
    registry["store"].update_job(job, {"imagery": "scene"})
    code, out, err = run_cli(capsys, "retry", job, "--statuses", "failed")
    assert code == 0 and "1 tiles reset" in out, err
    units = [parse_work_unit(m["Body"]) for m in drain(registry["session"].client("sqs"), registry["res"].tile_queue_url)]
    assert units and {u.imagery for u in units} == {"scene"}


def test_forgetting_imagery_on_a_synthetic_default_is_warned(registry, moto_endpoint, capsys, tmp_path):
    """`up --imagery city=... --imagery osm=...` without a default: a `submit` without --imagery
    runs on the synthetic world (issue 18: real-looking areas from simulated imagery); it warns,
    naming the registered sources, and still submits (the demo's jobs use that default)."""
    aoi = tmp_path / "block.geojson"
    aoi.write_bytes(block_aoi(X, Y, 2, 1))
    warning = "warning: imagery: the default source is the synthetic test world; use --imagery osm|scene for your imagery"
    code, _, err = run_cli(capsys, "submit", str(aoi))
    assert code == 0 and warning not in err  # a default the user gave (the state file does not say synthetic)
    sources = parse_sources({"scene": str(tmp_path / "scene.tif"), "osm": "https://tiles.example/{z}/{x}/{y}.png"},)
    write_state(Path(registry["state"]), moto_endpoint, registry["res"], "http://127.0.0.1:9/{z}/{x}/{y}.png", sources,
                default_is_synthetic=True)
    code, out, err = run_cli(capsys, "submit", str(aoi), "--rerun")
    assert code == 0 and out.strip() and err.splitlines()[0] == warning
    code, _, err = run_cli(capsys, "submit", str(aoi), "--imagery", "scene", "--rerun")
    assert code == 0 and "synthetic" not in err
    write_state(Path(registry["state"]), moto_endpoint, registry["res"], "http://127.0.0.1:9/{z}/{x}/{y}.png", {},
                default_is_synthetic=True)
    code, _, err = run_cli(capsys, "submit", str(aoi), "--rerun")
    assert code == 0 and "synthetic" not in err  # nothing else to choose: the demo's case


@pytest.mark.parametrize("counters, noted", [
    ({"tiles_no_imagery": 2}, True),
    ({"tiles_no_imagery": 1, "tiles_done": 1}, False),
    ({"tiles_no_imagery": 1, "tiles_failed": 1}, False),
])
def test_a_job_where_no_tile_had_imagery_says_so(registry, capsys, tmp_path, counters, noted):
    """Issue 18: COMPLETE, exit 0 and zeros said nothing when the AOI missed the imagery (e.g.
    [lat, lon] against a URL template): `submit --wait` and `status` add one line."""
    aoi = tmp_path / "block.geojson"
    aoi.write_bytes(block_aoi(X0, Y0, 2, 1))
    code, out, _ = run_cli(capsys, "submit", str(aoi), "--imagery", "osm")
    job = out.strip()
    registry["store"].create_job(job, {"status": COMPLETE, "tiles_total": 2, "tiles_final": 2, "imagery": "osm",
                                       **counters})
    note = "no tile had imagery: is the AOI inside the source's coverage? (GeoJSON wants [lon, lat])"
    code, _, err = run_cli(capsys, "submit", str(aoi), "--imagery", "osm", "--wait", "--no-progress")
    assert code == 0 and (f"note: {note}" in err.splitlines()) == noted
    code, out, _ = run_cli(capsys, "status", job)
    assert code == 0 and (["note", note] in [line.split(None, 1) for line in out.splitlines()]) == noted


def _submit(capsys, aoi, *more) -> tuple[str, str]:
    code, out, err = run_cli(capsys, "submit", str(aoi), *more)
    assert code == 0, err
    return out.strip(), err


def test_the_job_id_covers_the_model_up_runs_and_jobs_names_it(env, moto_endpoint, capsys, tmp_path):  # noqa: F811
    """Two `up --model` files (the state file records each) are two jobs of one AOI; the same file
    the same job; `jobs` and `status` name the model ID/VERSION, not `default`."""
    aoi = tmp_path / "block.geojson"
    aoi.write_bytes(block_aoi(X0, Y0, 1, 1))
    first, second = model_copy(tmp_path / "a", "1"), model_copy(tmp_path / "b", "1", b"other weights")
    ids = []
    for model in (first, second, first):
        write_state(env["state"], moto_endpoint, env["res"], "http://127.0.0.1:9/{z}/{x}/{y}.png",
                    model=file_identity(model))
        job_id, err = _submit(capsys, aoi)
        ids.append(job_id)
        if "already holds" not in err:  # as the enumerator records it
            env["store"].create_job(job_id, {"status": COMPLETE, "tiles_total": 1, "name": "block",
                                             "model": file_identity(model)})
    assert ids[0] != ids[1] and ids[2] == ids[0]
    code, out, _ = run_cli(capsys, "jobs")
    rows = [line for line in out.splitlines() if line.startswith((ids[0], ids[1]))]
    assert code == 0 and len(rows) == 2 and all(r.split()[-1] == "trial/1" for r in rows)
    code, out, _ = run_cli(capsys, "status", ids[1])
    lines = {line.split()[0]: line.split(None, 1)[1] for line in out.splitlines()}
    assert lines["model"] == "trial/1" and str(second) in lines["model_uri"]


def test_a_stack_pinning_a_model_records_it_and_one_without_the_outputs_records_none(env, capsys, tmp_path):  # noqa: F811
    """The stack's PinnedModelUri output (model_s3_uri) is the job's model and identity; a stack
    deployed before the model outputs leaves it unknown ("")."""
    from test_deployment import create_stack, stack_outputs

    aoi = tmp_path / "block.geojson"
    aoi.write_bytes(block_aoi(X0, Y0, 1, 1))
    ids = [_submit(capsys, aoi, "--stack", env["stack"])[0]]
    body = env["session"].client("s3").get_object(
        Bucket=env["res"].trigger_bucket, Key=f"{resources.TRIGGER_PREFIX}block.geojson")["Body"].read()
    assert json.loads(body)["looking_glass"]["model"] == ""
    storage, inference = stack_outputs(env["res"])
    for uri in ("s3://models/buildings/v7/model.keras", "s3://models/buildings/v8/model.keras"):
        name = f"Pin{uri[-14:-12]}"
        create_stack(f"{name}Storage", storage)
        create_stack(f"{name}Inference", {**inference, resources.OUTPUT_PINNED_MODEL: uri})
        job_id, err = _submit(capsys, aoi, "--stack", name)
        body = env["session"].client("s3").get_object(
            Bucket=env["res"].trigger_bucket, Key=f"{resources.TRIGGER_PREFIX}block.geojson")["Body"].read()
        assert json.loads(body)["looking_glass"]["model"] == uri and "already holds" not in err
        ids.append(job_id)
    assert len(set(ids)) == 3  # no model known, v7 pinned, v8 pinned: three jobs


def test_a_retry_under_another_model_records_both_on_the_job_and_its_exports(env, capsys, tmp_path):  # noqa: F811
    """A job of registered m/1 with done tiles, retried after `models use` made m/2 active: the
    record's model is m/2 with m/1 in earlier_models; `jobs`, `status` and the export header name
    both (they named m/1 alone, which processed only some tiles)."""
    from test_results_cli import FULL, add_job

    old, new = "s3://m/registry/m/1/model.keras", "s3://m/registry/m/2/model.keras"
    job_id = add_job(env, FULL)
    env["store"].update_job(job_id, {"model": old})
    env["session"].client("ssm").put_parameter(Name=parameter_name(env["res"].masks_bucket), Value=new,
                                               Type="String", Overwrite=True)
    code, _, err = run_cli(capsys, "retry", job_id)
    assert code == 0, err
    job = env["store"].get_job(job_id)
    assert job["model"] == new and job["earlier_models"] == [old]
    code, out, _ = run_cli(capsys, "jobs")
    assert code == 0 and next(r for r in out.splitlines() if r.startswith(job_id)).split()[-1] == "m/1,m/2"
    code, out, _ = run_cli(capsys, "status", job_id)
    lines = {line.split()[0]: line.split(None, 1)[1] for line in out.splitlines()}
    assert lines["model"] == "m/1,m/2" and lines["model_uri"] == new
    from looking_glass.results.buildings import Provenance

    assert Provenance.of_job(job).metadata()["job_model"] == "m/1,m/2"
    code, _, err = run_cli(capsys, "retry", job_id, "--force")  # the same model again: nothing more recorded
    assert code == 0, err
    assert env["store"].get_job(job_id)["earlier_models"] == [old]
