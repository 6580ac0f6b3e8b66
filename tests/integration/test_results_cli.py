"""submit, jobs, status, results, retry and the store queries behind them, on a real moto server:
against the embedded run (its state file) and against a stack by name (moto CloudFormation
outputs). Jobs and tile results are written with the store's own API, as the enumerator and
the workers write them."""

from __future__ import annotations

import csv
import io
import json
import threading
import time
import uuid
from decimal import Decimal
from pathlib import Path

import pytest
from conftest import (
    drain,
    queued,
    run_cli,  # noqa: F401 - re-exported for test_webmap
)
from test_deployment import create_stack, stack_outputs

from looking_glass.grid import quadkey, tile_bounds
from looking_glass.local.deployment import write_state
from looking_glass.pipeline.enumerator import job_id_for_aoi
from looking_glass.pipeline.store import COMPLETE, RUNNING, ResultsStore, TileResult, job_id_for
from looking_glass.pipeline.workunits import WorkUnit, parse_work_unit
from looking_glass.results.query import fetch_tiles
from looking_glass.runtime import resources
from looking_glass.tiling.aoi import parse_aoi

X0, Y0 = 152_024, 131_478  # near Kigali


def block_aoi(x0, y0, w, h, name="block") -> bytes:
    """An AOI drawn exactly on tile edges: it covers exactly these w x h tiles."""
    west, _, _, north = tile_bounds(x0, y0, 18)
    _, south, east, _ = tile_bounds(x0 + w - 1, y0 + h - 1, 18)
    ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
    return json.dumps({"type": "Feature", "properties": {"name": name},
                       "geometry": {"type": "Polygon", "coordinates": [ring]}}).encode()


@pytest.fixture
def env(aws, moto_endpoint, tmp_path, monkeypatch):
    """The test's resources as an embedded run (state file) and as a stack (CloudFormation)."""
    session, names, res = aws
    state = tmp_path / "embedded.json"
    write_state(state, moto_endpoint, res, "http://127.0.0.1:9/{z}/{x}/{y}.png")
    monkeypatch.setenv("LG_EMBEDDED_STATE", str(state))
    stack = f"Lg{uuid.uuid4().hex[:8]}"
    storage, inference = stack_outputs(res)
    create_stack(f"{stack}Storage", storage)
    create_stack(f"{stack}Inference", inference)
    store = ResultsStore(session.client("dynamodb"), res.results_table)
    return {"session": session, "res": res, "store": store, "stack": stack, "state": state, "tmp": tmp_path}


def add_job(env, tiles, w=3, h=2, name="block", status=RUNNING, created_at=None, aoi=True):
    """A job as the enumerator leaves it (AOI in the trigger bucket, record), then tile results
    as workers store them. ``tiles``: {(dx, dy): (status, area, reason)}."""
    res, store = env["res"], env["store"]
    data = block_aoi(X0, Y0, w, h, name)
    key = f"{resources.TRIGGER_PREFIX}{name}-{uuid.uuid4().hex[:6]}.geojson"
    s3 = env["session"].client("s3")
    put = s3.put_object(Bucket=res.trigger_bucket, Key=key, Body=data) if aoi else {"ETag": uuid.uuid4().hex}
    job_id = job_id_for(res.trigger_bucket, key, put["ETag"])
    attrs = {"status": status, "name": name, "tiles_total": w * h, "zoom": 18, "aoi_bucket": res.trigger_bucket,
             "aoi_key": key, "aoi_version": put.get("VersionId", ""), "warnings": [], "worker_job": "local-x"}
    store.create_job(job_id, attrs)
    if created_at:
        store.update_job(job_id, {"created_at": created_at})
    results = [
        TileResult(x=X0 + dx, y=Y0 + dy, z=18, quadkey=quadkey(X0 + dx, Y0 + dy, 18), status=st,
                   building_area_m2=Decimal(area), building_pixels=0, reason=reason)
        for (dx, dy), (st, area, reason) in tiles.items()
    ]
    store.record_tiles(job_id, results, {"imagery": "http://127.0.0.1:9/{z}/{x}/{y}.png", "model_id": "m"})
    store.try_complete(job_id)
    return job_id


FULL = {
    (0, 0): ("done", "10.5", None),
    (1, 0): ("done", "20", None),
    (2, 0): ("failed", "0", "HTTP 500 after 3 tries"),
    (0, 1): ("no_imagery", "0", None),
    (1, 1): ("done", "5.25", None),
    (2, 1): ("failed", "0", "corrupt PNG"),
}


# ---- store queries -----------------------------------------------------------------------------
def test_jobs_index_lists_jobs_newest_first_without_scanning(env):
    store = env["store"]
    ids = [add_job(env, {}, name=f"j{i}", created_at=f"2026-01-0{i + 1}T00:00:00+00:00") for i in range(3)]
    calls = []
    store.ddb.meta.events.register("before-call.dynamodb.*", lambda model, **kw: calls.append(model.name))
    jobs = store.list_jobs()
    assert [j["job_id"] for j in jobs] == ids[::-1]
    assert all(j["sort_key"] == resources.JOB_SORT_KEY for j in jobs)  # no tile items in the index
    assert store.list_jobs(limit=2) == jobs[:2]
    assert "Scan" not in calls and set(calls) == {"Query"}


def test_key_range_reads_of_tiles(env):
    store = env["store"]
    job = add_job(env, FULL)
    qks = sorted(quadkey(X0 + dx, Y0 + dy, 18) for dx, dy in FULL)
    assert store.quadkey_extent(job) == (qks[0], qks[-1])
    assert [i["quadkey"] for i in store.query_tiles(job)] == qks
    mid = [i["quadkey"] for i in store.query_tiles(job, qks[1], qks[3])]
    assert mid == qks[1:4]
    parent = quadkey(X0 // 2, Y0 // 2, 17)
    assert {i["quadkey"] for i in store.query_tiles(job, parent)} == {q for q in qks if q.startswith(parent)}
    only = next(store.query_tiles(job, attributes=("quadkey", "status")))
    assert set(only) == {"quadkey", "status"}
    seq = fetch_tiles(store, job, threads=1)
    par = fetch_tiles(store, job, threads=4)
    assert sorted(i["quadkey"] for i in par) == [i["quadkey"] for i in seq] == qks
    assert fetch_tiles(store, job, prefix=parent, threads=4) == [i for i in seq if i["quadkey"].startswith(parent)]
    assert store.quadkey_extent("0" * 24) is None


def test_forget_tiles_takes_them_out_of_the_counters(env):
    store = env["store"]
    job = add_job(env, FULL)
    assert store.get_job(job)["status"] == COMPLETE
    failed = [i for i in store.query_tiles(job) if i["status"] == "failed"]
    assert store.forget_tiles(job, failed) == 2
    rec = store.get_job(job)
    assert (rec["tiles_failed"], rec["tiles_final"], rec["tiles_done"]) == (0, 4, 3)
    assert rec["building_area_m2"] == Decimal("35.750")
    # an item whose status changed meanwhile is left alone
    done = [{**i, "status": "failed"} for i in store.query_tiles(job) if i["status"] == "done"][:1]
    assert store.forget_tiles(job, done) == 0
    assert store.reopen_job(job) and store.get_job(job)["status"] == RUNNING
    assert "finished_at" not in store.get_job(job)


# ---- submit ------------------------------------------------------------------------------------
def test_submit_uploads_the_aoi_and_prints_the_lambdas_job_id(env, capsys, tmp_path):
    aoi = tmp_path / "Kigali centre.geojson"
    aoi.write_bytes(block_aoi(X0, Y0, 3, 2, "inner"))
    code, out, err = run_cli(capsys, "submit", str(aoi))
    assert code == 0, err
    job_id = out.strip()
    res, s3 = env["res"], env["session"].client("s3")
    key = f"{resources.TRIGGER_PREFIX}Kigali-centre.geojson"
    body = s3.get_object(Bucket=res.trigger_bucket, Key=key)["Body"].read()
    assert job_id == job_id_for_aoi(res.trigger_bucket, key, body)
    assert "'inner' (6 zoom-18 tiles)" in err


def test_submit_with_a_label_names_the_job_and_the_object(env, capsys, tmp_path):
    aoi = tmp_path / "a.geojson"
    aoi.write_bytes(block_aoi(X0, Y0, 1, 1, "own name"))
    code, out, _ = run_cli(capsys, "submit", str(aoi), "--stack", env["stack"], "--name", "district-4")
    assert code == 0
    body = env["session"].client("s3").get_object(
        Bucket=env["res"].trigger_bucket, Key="aoi/district-4.geojson")["Body"].read()
    assert parse_aoi(body).name == "district-4"  # what the enumerator will call the job


@pytest.mark.parametrize(
    "content, reason",
    [
        (b"{not json", "not valid JSON"),
        (json.dumps({"type": "Polygon", "coordinates": [[[30, -1], [30.01, -1.01], [30.01, -1], [30, -1.01], [30, -1]]]}).encode(),
         "Self-intersection"),
        (json.dumps({"type": "Point", "coordinates": [30, -1]}).encode(), "no polygonal geometry"),
    ],
)
def test_submit_refuses_a_bad_aoi_before_upload(env, capsys, tmp_path, content, reason):
    aoi = tmp_path / "bad.geojson"
    aoi.write_bytes(content)
    code, out, err = run_cli(capsys, "submit", str(aoi))
    assert code != 0 and out == ""
    assert "AOI refused" in err and reason in err
    listed = env["session"].client("s3").list_objects_v2(Bucket=env["res"].trigger_bucket)
    assert listed.get("KeyCount", 0) == 0


def test_submit_bad_label_and_missing_file(env, capsys, tmp_path):
    aoi = tmp_path / "a.geojson"
    aoi.write_bytes(block_aoi(X0, Y0, 1, 1))
    code, _, err = run_cli(capsys, "submit", str(aoi), "--name", "../etc")
    assert code != 0 and "--name '../etc'" in err
    code, _, err = run_cli(capsys, "submit", str(tmp_path / "missing.geojson"))
    assert code != 0 and "not found" in err


def test_submit_wait_follows_the_job_until_it_is_final(env, capsys, tmp_path):
    """The pipeline is played by a thread with the store's API: the job appears after the
    upload, its tiles arrive in two steps, and the last one completes it."""
    aoi = tmp_path / "w.geojson"
    aoi.write_bytes(block_aoi(X0, Y0, 2, 1, "waited"))
    res, store, s3 = env["res"], env["store"], env["session"].client("s3")

    def pipeline():
        key = "aoi/w.geojson"
        for _ in range(200):
            try:
                body = s3.get_object(Bucket=res.trigger_bucket, Key=key)["Body"].read()
                break
            except Exception:  # noqa: BLE001 - not uploaded yet
                time.sleep(0.05)
        job = job_id_for_aoi(res.trigger_bucket, key, body)
        store.create_job(job, {"status": RUNNING, "tiles_total": 2, "name": "waited"})
        for dx in (0, 1):
            time.sleep(0.5)
            store.record_tiles(job, [TileResult(X0 + dx, Y0, 18, quadkey(X0 + dx, Y0, 18), "done", Decimal(1))], {})
        store.try_complete(job)

    thread = threading.Thread(target=pipeline, daemon=True)
    thread.start()
    code, out, err = run_cli(capsys, "submit", str(aoi), "--wait", "--timeout", "60")
    thread.join(10)
    assert code == 0, err
    assert "COMPLETE: 2 done, 0 failed" in err
    assert "2/2" in err  # the progress bar


# ---- jobs and status ---------------------------------------------------------------------------
def test_jobs_lists_status_progress_times_and_names(env, capsys):
    a = add_job(env, FULL, name="district-a", created_at="2026-02-01T00:00:00+00:00")
    b = add_job(env, {(0, 0): ("done", "1", None)}, name="district-b", created_at="2026-03-01T00:00:00+00:00")
    code, out, _ = run_cli(capsys, "jobs")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["job_id", "status", "progress", "failed", "created_at", "finished_at", "name", "imagery",
                                "model"]
    assert lines[1].startswith(b) and "RUNNING" in lines[1] and "1/6 (17%)" in lines[1] and "district-b" in lines[1]
    assert lines[2].startswith(a) and "COMPLETE" in lines[2] and "6/6 (100%)" in lines[2]
    # no --imagery, no `models use`: the default source and the deployment's own model
    assert lines[1].split()[-2:] == lines[2].split()[-2:] == ["default", "default"]
    env["store"].update_job(b, {"model": f"s3://{env['res'].masks_bucket}/registry/m-finetuned/7/model.keras"})
    code, out, _ = run_cli(capsys, "jobs")
    assert out.splitlines()[1].split()[-1] == "m-finetuned/7"
    code, out, _ = run_cli(capsys, "jobs", "--stack", env["stack"], "--json", "--limit", "1")
    assert [j["job_id"] for j in json.loads(out)] == [b]


def test_status_shows_failure_reasons_and_the_jobs_dead_letters(env, capsys):
    job = add_job(env, FULL)
    sqs, res = env["session"].client("sqs"), env["res"]
    mine = WorkUnit(job, 18, ((Y0, X0, X0 + 2),)).to_json()
    other = WorkUnit("f" * 24, 18, ((Y0, X0, X0 + 1),)).to_json()
    for body in (mine, other):
        sqs.send_message(QueueUrl=res.tile_dlq_url, MessageBody=body,
                         MessageAttributes={"reason": {"DataType": "String", "StringValue": "x"}})
    code, out, err = run_cli(capsys, "status", job[:10])
    assert code == 0, err
    fields = dict(line.split(None, 1) for line in out.splitlines() if not line.startswith("tile failures"))
    assert fields["job_id"] == job and fields["status"] == "COMPLETE"
    assert fields["tiles_failed"] == "2" and fields["dlq_messages"] == "1"
    assert "1 x HTTP 500 after 3 tries" in out and "1 x corrupt PNG" in out
    assert queued(sqs, res.tile_dlq_url) == 2  # looked at, not taken
    assert len(drain(sqs, res.tile_dlq_url)) == 2  # and visible again
    code, out, _ = run_cli(capsys, "status", job, "--json", "--stack", env["stack"])
    assert json.loads(out)["tile_failure_reasons"] == {"HTTP 500 after 3 tries": 1, "corrupt PNG": 1}


@pytest.mark.parametrize("job", ["xyz", "abcdef0123"])
def test_bad_or_unknown_job_ids_are_refused(env, capsys, job):
    code, _, err = run_cli(capsys, "status", job)
    assert code == 2 and f"no job with the name or an id starting with '{job}'" in err


def test_commands_without_a_deployment_say_how_to_get_one(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("LG_EMBEDDED_STATE", str(tmp_path / "nothing.json"))
    code, _, err = run_cli(capsys, "jobs")
    assert code != 0 and "looking-glass up" in err and "--stack NAME" in err


# ---- results -----------------------------------------------------------------------------------
def test_results_per_tile_rollup_and_within_agree_with_the_store(env, capsys, tmp_path):
    job = add_job(env, FULL)
    code, out, _ = run_cli(capsys, "results", job, "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 6 and "TOTAL" not in out  # the rows only; totals are asked for with --totals
    assert sum(float(r["building_area_m2"]) for r in rows) == 35.75
    assert {r["status"] for r in rows} == {"done", "failed", "no_imagery"}
    assert {r["reason"] for r in rows if r["status"] == "failed"} == {"HTTP 500 after 3 tries", "corrupt PNG"}

    code, out, _ = run_cli(capsys, "results", job, "--zoom", "16", "--format", "csv", "--stack", env["stack"])
    rows = list(csv.DictReader(io.StringIO(out)))
    by_cell = {}
    for dx, dy in FULL:
        by_cell.setdefault(quadkey(X0 + dx, Y0 + dy, 18)[:16], []).append(FULL[(dx, dy)])
    assert {r["quadkey"] for r in rows} == set(by_cell)
    for r in rows:
        cell = by_cell[r["quadkey"]]
        assert int(r["tiles"]) == len(cell)
        assert int(r["tiles_done"]) == sum(s == "done" for s, _, _ in cell)
        assert int(r["tiles_failed"]) == sum(s == "failed" for s, _, _ in cell)
        assert float(r["building_area_m2"]) == pytest.approx(sum(float(a) for _, a, _ in cell))

    # a polygon over the west half of the block: tiles dx=0 whole, dx=1 half
    west, _, _, north = tile_bounds(X0, Y0, 18)
    w1, south, e1, _ = tile_bounds(X0 + 1, Y0 + 1, 18)
    ring = [[west, south], [(w1 + e1) / 2, south], [(w1 + e1) / 2, north], [west, north], [west, south]]
    polys = tmp_path / "districts.geojson"
    polys.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"name": "west"}, "geometry": {"type": "Polygon", "coordinates": [ring]}}]}))
    out_file = tmp_path / "west.geojson"
    code, _, err = run_cli(capsys, "results", job, "--within", str(polys), "--format", "geojson", "--out", str(out_file))
    assert code == 0 and "wrote" in err
    # these tiles have no stored masks: no outlines to count, and the output says so
    assert "note: building_count is empty: the job stored no masks" in err
    doc = json.loads(out_file.read_text())
    (feature,) = doc["features"]
    props = feature["properties"]
    assert props["name"] == "west" and props["tiles"] == 4 and props["tiles_partial"] == 2
    assert props["building_area_m2"] == pytest.approx(10.5 + 20 / 2 + 5.25 / 2, abs=0.01)
    assert (props["tiles_done"], props["tiles_no_imagery"], props["tiles_failed"]) == (3, 1, 0)
    assert props["building_count"] is None and "building_count_estimate" in props
    assert doc["totals"]["job_tiles_total"] == 6


def test_results_table_is_the_default(env, capsys):
    job = add_job(env, FULL)
    code, out, _ = run_cli(capsys, "results", job, "--zoom", "12")
    assert code == 0
    assert out.splitlines()[0].split()[:4] == ["quadkey", "z", "x", "y"]
    assert "TOTAL" in out and "35.8" in out  # areas to a tenth of a m2


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--zoom", "19"], "argument --zoom: zoom 19 is outside 0..18"),
        (["--within", "/nonexistent/p.geojson"], "--within /nonexistent/p.geojson: polygons file not found"),
        (["--out", f"{__file__}/x.csv"], "test_results_cli.py is a file, not a folder"),
    ],
)
def test_results_bad_inputs(env, capsys, extra, message):
    job = add_job(env, FULL)
    code, _, err = run_cli(capsys, "results", job, *extra)
    assert code != 0 and message in err


def test_results_out_makes_missing_folders(env, capsys, tmp_path, monkeypatch):
    """The README's `results JOB --out demo-output/atlanta.csv` before `make demo` made the folder
    (issue 18): the folder is made, as `map --out` makes its own; no usage block."""
    job = add_job(env, FULL)
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(capsys, "results", job, "--format", "csv", "--out", "demo-output/atlanta.csv")
    assert code == 0 and out == "" and err.startswith("wrote demo-output/atlanta.csv: ")
    assert (tmp_path / "demo-output" / "atlanta.csv").read_text().startswith("quadkey,")


def test_results_totals_on_request_in_their_own_output(env, capsys, tmp_path):
    job = add_job(env, FULL)
    out_file = tmp_path / "totals.csv"
    code, _, err = run_cli(capsys, "results", job, "--zoom", "16", "--format", "csv", "--totals", "--out", str(out_file))
    assert code == 0 and "the totals of" in err
    (line,) = list(csv.DictReader(io.StringIO(out_file.read_text())))
    assert float(line["building_area_m2"]) == 35.75 and int(line["tiles"]) == 6 and line["job_status"] == "COMPLETE"
    code, out, _ = run_cli(capsys, "results", job, "--totals")
    assert code == 0 and out.splitlines()[0].split() == ["tiles", "6"]
    code, out, err = run_cli(capsys, "results", job, "--format", "geojson", "--totals")
    assert code == 2 and out == "" and "--totals goes with --format table or csv" in err
    code, out, err = run_cli(capsys, "results", job, "--totals", "--compare", str(tmp_path / "mapped.geojson"))
    assert code == 2 and out == "" and "not with --compare" in err


def test_results_zoom_and_within_together_is_a_usage_error(env, capsys, tmp_path):
    code, _, err = run_cli(capsys, "results", "abcdef", "--zoom", "3", "--within", "x.geojson")
    assert code == 2 and "not allowed with" in err


def test_results_bad_polygons_file(env, capsys, tmp_path):
    job = add_job(env, FULL)
    bad = tmp_path / "bad.geojson"
    bad.write_text(json.dumps({"type": "Feature", "properties": {}, "geometry": {"type": "LineString", "coordinates": [[0, 0], [1, 1]]}}))
    code, _, err = run_cli(capsys, "results", job, "--within", str(bad))
    assert code == 2 and "no usable building polygon in it" in err and "a LineString, not a polygon" in err


# ---- retry -------------------------------------------------------------------------------------
def test_retry_enqueues_only_tiles_without_done_and_moves_dead_letters_back(env, capsys):
    # 4x2 block: done x3, failed x2, no_imagery x1, and two tiles never stored, one of which
    # sits in a dead-lettered work unit of this job
    tiles = {
        (0, 0): ("done", "1", None), (1, 0): ("done", "2", None), (2, 0): ("failed", "0", "x"),
        (3, 0): ("no_imagery", "0", None), (0, 1): ("done", "3", None), (1, 1): ("failed", "0", "y"),
    }
    job = add_job(env, tiles, w=4, h=2)
    sqs, res, store = env["session"].client("sqs"), env["res"], env["store"]
    dead_mine = WorkUnit(job, 18, ((Y0 + 1, X0 + 2, X0 + 3),)).to_json()  # tile (2, 1)
    dead_other = WorkUnit("e" * 24, 18, ((Y0, X0, X0 + 1),)).to_json()
    for body in (dead_mine, dead_other, "not json"):
        sqs.send_message(QueueUrl=res.tile_dlq_url, MessageBody=body)

    code, out, err = run_cli(capsys, "retry", job, "--stack", env["stack"])
    assert code == 0, err
    assert "3 tiles reset" in out and "2 without any result" in out and "1 dead-letter messages moved back" in out

    rec = store.get_job(job)
    assert rec["status"] == RUNNING and "finished_at" not in rec
    assert (rec["tiles_done"], rec["tiles_failed"], rec["tiles_no_imagery"], rec["tiles_final"]) == (3, 0, 0, 3)
    assert {i["status"] for i in store.query_tiles(job)} == {"done"}

    units = [parse_work_unit(m["Body"]) for m in drain(sqs, res.tile_queue_url)]
    assert all(u.job_id == job for u in units)
    queued_tiles = sorted((x - X0, y - Y0) for u in units for x, y, _ in u.tiles())
    # failed (2,0) (1,1), no_imagery (3,0), missing (3,1), and (2,1) via the moved DLQ message
    assert queued_tiles == sorted([(2, 0), (1, 1), (3, 0), (3, 1), (2, 1)])
    assert sum(u.tiles() == [(X0 + 2, Y0 + 1, 18)] for u in units) == 1  # the DLQ message itself
    left = sorted(m["Body"] for m in drain(sqs, res.tile_dlq_url))
    assert left == sorted([dead_other, "not json"])


def test_retry_only_failed_and_refusals(env, capsys):
    tiles = {(0, 0): ("done", "1", None), (1, 0): ("failed", "0", "x"), (2, 0): ("no_imagery", "0", None)}
    job = add_job(env, tiles, w=3, h=1)
    sqs, res = env["session"].client("sqs"), env["res"]
    code, out, _ = run_cli(capsys, "retry", job, "--statuses", "failed")
    assert code == 0 and "1 tiles reset" in out
    # work is queued now: a second retry is refused unless forced
    code, _, err = run_cli(capsys, "retry", job)
    assert code != 0 and "tile queue still holds" in err and "--force" in err
    drain(sqs, res.tile_queue_url)
    code, _, err = run_cli(capsys, "retry", job, "--statuses", "done")
    assert code == 2 and "comma-separated list of failed, no_imagery, skipped" in err


def test_retry_refuses_a_job_rejected_before_it_had_tiles(env, capsys):
    store = env["store"]
    job = uuid.uuid4().hex[:24]
    store.create_job(job, {"status": "FAILED", "reason": "AOI is not valid JSON"})
    code, _, err = run_cli(capsys, "retry", job)
    assert code != 0 and "fix the AOI and submit it again" in err


def test_retry_against_a_stack_without_batch_job_still_enqueues(env, capsys):
    # This stack has no JobQueueArn/JobDefinitionArn outputs and Batch does not know the job's
    # latest Batch job: the tile stays queued, and the error says how to start workers (exit 1).
    tiles = {(0, 0): ("failed", "0", "x")}
    job = add_job(env, tiles, w=1, h=1)
    env["store"].update_job(job, {"worker_job": "b1a2c3"})
    code, out, err = run_cli(capsys, "retry", job, "--stack", env["stack"])
    assert code == 1 and "1 tiles enqueued" in out and out.rstrip().endswith("; no workers started"), out
    assert f"error: job {job}: 1 tiles are queued again in 1 work units, but no workers were started" in err
    assert "Batch no longer knows the job's latest Batch job b1a2c3" in err and "aws batch submit-job" in err
    assert queued(env["session"].client("sqs"), env["res"].tile_queue_url) == 1


def test_an_unreachable_endpoint_is_one_clear_line(env, capsys, monkeypatch):
    write_state(env["state"], "http://127.0.0.1:9", env["res"], "")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    code, _, err = run_cli(capsys, "jobs")
    assert code != 0 and err.startswith("error: cannot reach AWS") and "Traceback" not in err


def test_access_denied_and_the_like_are_one_clear_line(env, capsys):
    code, _, err = run_cli(capsys, "status", "ab" * 12, "--stack", env["stack"])
    assert code != 0 and "no job" in err
    # a stack whose table does not exist: the AWS error is reported, not a traceback
    name = f"Lg{uuid.uuid4().hex[:8]}"
    storage, inference = stack_outputs(env["res"])
    create_stack(f"{name}Storage", {**storage, resources.OUTPUT_RESULTS_TABLE: "no-such-table"})
    create_stack(f"{name}Inference", inference)
    code, _, err = run_cli(capsys, "jobs", "--stack", name)
    assert code != 0 and "AWS refused Query: ResourceNotFoundException" in err


# ---- issue 16: names shown escaped wherever printed or drawn ------------------------------------
ESCAPE_NAME = json.loads(
    (Path(__file__).resolve().parents[1] / "data" / "cases" / "aoi-control-characters" / "escape_name.geojson").read_text()
)["properties"]["name"]


def test_names_with_control_characters_are_printed_escaped(env, capsys):
    """tests/data/cases/aoi-control-characters: `jobs`, `status` and `results` never pass the
    name's escape sequences or newline to the terminal, so it cannot forge a line."""
    job = add_job(env, FULL, name="escape")
    env["store"].update_job(job, {"name": ESCAPE_NAME, "warnings": ["feature 'x\x1b[31mred'"]})
    outputs = []
    for argv in (("jobs",), ("status", job), ("results", job, "--format", "table")):
        code, out, err = run_cli(capsys, *argv)
        assert code == 0, (argv, err)
        outputs.append(out + err)
    for text in outputs[:2]:
        assert "\x1b" not in text and "\x07" not in text
        assert "legit\\x1b[2J" in text
    jobs_lines = [line for line in outputs[0].splitlines() if "pwned" in line or "COMPLETE  1/1" in line]
    assert len(jobs_lines) == 1 and jobs_lines[0].startswith(job)  # no forged row of its own
    assert "\x1b" not in outputs[2]
