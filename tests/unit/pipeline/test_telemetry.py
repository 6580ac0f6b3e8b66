"""The worker's custom metric: one CloudWatch Embedded Metric Format line per processed batch."""

from __future__ import annotations

import json

from looking_glass.pipeline import telemetry
from looking_glass.runtime import resources


def emf_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if '"_aws"' in line]


def test_tiles_done_line_is_valid_emf_for_the_dashboard_metric(capsys):
    telemetry.emit_tiles_done(37, environ={resources.ENV_DEPLOYMENT: "LookingGlassDev"})
    (record,) = emf_lines(capsys.readouterr().out)
    directive = record["_aws"]
    assert isinstance(directive["Timestamp"], int) and directive["Timestamp"] > 1_600_000_000_000
    (metric_set,) = directive["CloudWatchMetrics"]
    assert metric_set["Namespace"] == resources.METRICS_NAMESPACE
    assert metric_set["Metrics"] == [{"Name": resources.METRIC_TILES_DONE, "Unit": "Count"}]
    # Every dimension and metric named in the directive is a top-level member (EMF rule).
    (dimension_set,) = metric_set["Dimensions"]
    assert dimension_set == [resources.METRIC_DIMENSION_DEPLOYMENT]
    assert record[resources.METRIC_DIMENSION_DEPLOYMENT] == "LookingGlassDev"
    assert record[resources.METRIC_TILES_DONE] in (37, [37])


def test_no_deployment_is_local_and_zero_tiles_print_nothing(capsys):
    telemetry.emit_tiles_done(0, environ={})
    assert emf_lines(capsys.readouterr().out) == []
    telemetry.emit_tiles_done(2, environ={})
    (record,) = emf_lines(capsys.readouterr().out)
    assert record[resources.METRIC_DIMENSION_DEPLOYMENT] == telemetry.LOCAL_DEPLOYMENT


def test_the_worker_reports_the_tiles_it_stored_once_per_processed_batch(capsys, monkeypatch):
    """Worker._store with fakes around it: the line carries what record_tiles stored."""
    import threading
    from concurrent.futures import Future
    from types import SimpleNamespace

    from looking_glass.pipeline.worker import Inferred, Prefetched, Worker, WorkerStats

    calls = []
    worker = Worker.__new__(Worker)
    worker.settings = SimpleNamespace(batch_size=8)
    worker.provenance = {}
    worker.stats = WorkerStats()
    worker.stats_lock = threading.Lock()
    worker.resources = SimpleNamespace(tile_queue_url="q")
    worker.store = SimpleNamespace(
        record_tiles=lambda job_id, results, provenance: 3, all_final=lambda job_id: False,
        try_complete=lambda job_id: False,
    )
    worker.sqs = SimpleNamespace(delete_message=lambda **kw: calls.append("deleted"))
    worker.heartbeat = SimpleNamespace(release=lambda handle: None)
    monkeypatch.setenv(resources.ENV_DEPLOYMENT, "LookingGlass")
    unit = SimpleNamespace(job_id="j", zoom=18)
    results = Future()
    results.set_result(([], None))  # no tile results, no result object to wait for
    worker._store(Inferred(Prefetched({"ReceiptHandle": "r"}, unit, [], None), results))
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert len(lines) == 1 and lines[0][resources.METRIC_TILES_DONE] in (3, [3])
    assert lines[0][resources.METRIC_DIMENSION_DEPLOYMENT] == "LookingGlass"
    assert calls == ["deleted"]
