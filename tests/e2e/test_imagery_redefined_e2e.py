"""A source redefined under queued work units (issue 18): the enumerator stamps each unit with the
digest of the source definition its job was enumerated against; a real worker process whose
registry defines that name otherwise (a redeploy with other ``imagery_sources``, or ``up
--imagery NAME=other``) reads nothing for those units and fails their tiles with the reason,
each counted once, shown by ``status`` and ``results``; ``retry`` fails them the same way. A job
on a source left unchanged, in the same worker run, is processed as usual.

Real parts: the moto server, the enumerator's Lambda handler on moto's S3 notification, the
worker's entry point in its own process (``Pipeline`` of test_worker_faults), the CLI in process
against the embedded state file."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest
from conftest import drain, queued, run_cli
from test_worker_faults import assert_accounted, pipeline  # noqa: F401 - a fixture

from looking_glass.grid import quadkey, tile_bounds
from looking_glass.local.deployment import write_state
from looking_glass.local.embedded import LocalLambdaContext, load_enumerator_handler
from looking_glass.pipeline.enumerator import upload_aoi
from looking_glass.pipeline.launchers import register_local_launcher
from looking_glass.pipeline.store import COMPLETE
from looking_glass.pipeline.workunits import parse_work_unit
from looking_glass.runtime.imagery_sources import parse_sources

pytestmark = pytest.mark.e2e

X0, Y0 = 152_024, 131_478  # near Kigali; the two jobs lie side by side, 3 x 1 tiles each


class NoLauncher:
    """The test starts the workers itself, after the registry changed."""

    def launch(self, job_id, workers):
        return "local-test"


def block_aoi(x0: int, name: str, imagery: str) -> bytes:
    """An AOI drawn on tile edges covering tiles x0..x0+2 of row Y0, on the named source."""
    west, south, _, north = tile_bounds(x0, Y0, 18)
    east = tile_bounds(x0 + 2, Y0, 18)[2]
    ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
    return json.dumps({"type": "Feature", "properties": {"name": name}, "looking_glass": {"model": "", "imagery": imagery},
                       "geometry": {"type": "Polygon", "coordinates": [ring]}}).encode()


def test_tiles_of_a_source_redefined_under_queued_units_fail_with_the_reason(pipeline, moto_endpoint, tmp_path,  # noqa: F811
                                                                             monkeypatch, capsys):
    pipe = pipeline
    template = pipe.tiles.url_template
    before = {"city": template, "osm": f"{template}?layer=osm"}
    after = {**before, "city": f"{template}?v=2"}  # 'city' registered again for other imagery
    old, new = parse_sources(before)["city"].digest, parse_sources(after)["city"].digest

    # The enumerator (its Lambda handler, on moto's S3 notification) with the first registry.
    for key, value in pipe.resources.to_env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("LG_WORKER_LAUNCHER", "local")
    monkeypatch.setenv("LG_IMAGERY_SOURCES", json.dumps(before))
    register_local_launcher(NoLauncher())
    try:
        s3 = pipe.session.client("s3")
        jobs = {name: upload_aoi(s3, pipe.resources.trigger_bucket, f"{name}.geojson", block_aoi(x0, name, name),
                                 parse_sources(before)[name].digest) for name, x0 in (("city", X0), ("osm", X0 + 3))}
        events_url = pipe.sqs.get_queue_url(QueueName=pipe.names.aoi_events_queue)["QueueUrl"]
        handler = load_enumerator_handler()
        for message in drain(pipe.sqs, events_url, wait=1):
            event = json.loads(message["Body"])
            if "Records" in event:
                handler(event, LocalLambdaContext(aws_request_id="test"))
    finally:
        register_local_launcher(None)
    assert pipe.store.get_job(jobs["city"])["imagery_digest"] == old
    assert queued(pipe.sqs, pipe.resources.tile_queue_url) == 2  # one unit per job, still queued

    # The worker starts with the registry as redefined meanwhile.
    reason = (f"imagery source 'city' was redefined after this job was submitted (digest {old} != {new}): "
              "submit the AOI again for a job on the new definition")

    def run_worker_until_settled():
        worker = pipe.start_worker(LG_IMAGERY_SOURCES=json.dumps(after))
        pipe.finish(worker, lambda: all(pipe.job_settled(j) for j in jobs.values()), "both jobs to complete")

    run_worker_until_settled()
    city_keys = {quadkey(x, Y0, 18) for x in range(X0, X0 + 3)}
    items = assert_accounted(pipe, jobs["city"], city_keys)  # each tile once, counters = items, COMPLETE once
    assert {(i["status"], i["reason"]) for i in items.values()} == {("failed", reason)}
    assert all(pipe.tiles.requests_for(18, x, Y0) == [] for x in range(X0, X0 + 3))  # nothing read for it
    job = pipe.store.get_job(jobs["city"])
    assert (job["status"], job["tiles_failed"], job["tiles_final"]) == (COMPLETE, 3, 3)
    assert not pipe.dead_letters()  # failed tiles, not a bad message
    # the unchanged source, in the same run: read and processed as usual
    osm = pipe.store.tile_items(jobs["osm"])
    assert len(osm) == 3 and not any(i["status"] == "failed" for i in osm)
    assert all(pipe.tiles.requests_for(18, x, Y0) for x in range(X0 + 3, X0 + 6))

    # status and results show the reason (the CLI against this run's state file)
    state = tmp_path / "embedded.json"
    write_state(state, moto_endpoint, pipe.resources, template)
    monkeypatch.setenv("LG_EMBEDDED_STATE", str(state))
    code, out, err = run_cli(capsys, "status", jobs["city"])
    assert code == 0, err
    assert re.search(rf"tile failures +3 x {re.escape(reason)}", out), out
    code, out, err = run_cli(capsys, "results", jobs["city"], "--format", "csv")
    assert code == 0, err
    assert {(r["status"], r["reason"]) for r in csv.DictReader(io.StringIO(out))} == {("failed", reason)}

    # retry: the units carry the job's digest again, so the tiles fail the same way, counted once
    code, out, err = run_cli(capsys, "retry", jobs["city"], "--statuses", "failed")
    assert code == 0 and "3 tiles reset" in out, err
    held = drain(pipe.sqs, pipe.resources.tile_queue_url)
    assert {(u.imagery, u.imagery_digest) for u in map(parse_work_unit, (m["Body"] for m in held))} == {("city", old)}
    for m in held:  # back on the queue for the worker
        pipe.sqs.change_message_visibility(QueueUrl=pipe.resources.tile_queue_url, ReceiptHandle=m["ReceiptHandle"],
                                           VisibilityTimeout=0)
    run_worker_until_settled()
    items = pipe.store.tile_items(jobs["city"])
    assert sorted(i["quadkey"] for i in items) == sorted(city_keys)
    assert {(i["status"], i["reason"]) for i in items} == {("failed", reason)}
    job = pipe.store.get_job(jobs["city"])
    assert (job["status"], job["tiles_failed"], job["tiles_final"], job["tiles_done"]) == (COMPLETE, 3, 3, 0)
    assert all(pipe.tiles.requests_for(18, x, Y0) == [] for x in range(X0, X0 + 3))
