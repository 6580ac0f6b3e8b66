"""The worker's custom metric: one CloudWatch Embedded Metric Format line per processed batch."""

from __future__ import annotations

import io
import json

import pytest

from looking_glass import resources, telemetry


def test_tiles_done_line_is_valid_emf_for_the_dashboard_metric():
    out = io.StringIO()
    telemetry.emit_tiles_done(37, stream=out, environ={resources.ENV_DEPLOYMENT: "LookingGlassDev"})
    (line,) = out.getvalue().splitlines()
    record = json.loads(line)
    directive = record["_aws"]
    assert isinstance(directive["Timestamp"], int) and directive["Timestamp"] > 1_600_000_000_000
    (metric_set,) = directive["CloudWatchMetrics"]
    assert metric_set["Namespace"] == resources.METRICS_NAMESPACE
    assert metric_set["Metrics"] == [{"Name": resources.METRIC_TILES_DONE, "Unit": "Count"}]
    # Every dimension and metric named in the directive is a top-level member (EMF rule).
    (dimension_set,) = metric_set["Dimensions"]
    assert dimension_set == [resources.METRIC_DIMENSION_DEPLOYMENT]
    assert record[resources.METRIC_DIMENSION_DEPLOYMENT] == "LookingGlassDev"
    assert record[resources.METRIC_TILES_DONE] == 37


def test_no_deployment_is_local_and_zero_tiles_print_nothing():
    out = io.StringIO()
    telemetry.emit_tiles_done(0, stream=out, environ={})
    assert out.getvalue() == ""
    telemetry.emit_tiles_done(2, stream=out, environ={})
    assert json.loads(out.getvalue())[resources.METRIC_DIMENSION_DEPLOYMENT] == telemetry.LOCAL_DEPLOYMENT


def test_emf_record_rejects_no_metrics_and_keeps_several():
    with pytest.raises(ValueError):
        telemetry.emf_record({}, {})
    record = telemetry.emf_record({"A": (1, "Count"), "B": (2.5, "Seconds")}, {"X": "y"}, timestamp_ms=5)
    assert record["_aws"]["Timestamp"] == 5
    assert [m["Name"] for m in record["_aws"]["CloudWatchMetrics"][0]["Metrics"]] == ["A", "B"]
    assert (record["A"], record["B"], record["X"]) == (1, 2.5, "y")


def test_the_worker_reports_the_tiles_it_stored_once_per_processed_batch(capsys, monkeypatch):
    """Worker._store with fakes around it: the line carries what record_tiles stored."""
    from types import SimpleNamespace

    from looking_glass.worker import Inferred, Prefetched, Worker, WorkerStats

    calls = []
    worker = Worker.__new__(Worker)
    worker.settings = SimpleNamespace(batch_size=8)
    worker.provenance = {}
    worker.stats = WorkerStats()
    worker.resources = SimpleNamespace(tile_queue_url="q")
    worker.store = SimpleNamespace(
        record_tiles=lambda job_id, results, provenance: 3, try_complete=lambda job_id: False
    )
    worker.sqs = SimpleNamespace(delete_message=lambda **kw: calls.append("deleted"))
    worker.heartbeat = SimpleNamespace(release=lambda handle: None)
    monkeypatch.setenv(resources.ENV_DEPLOYMENT, "LookingGlass")
    unit = SimpleNamespace(job_id="j", zoom=18)
    worker._store(Inferred(Prefetched({"ReceiptHandle": "r"}, unit, [], None), [], []))
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert len(lines) == 1 and lines[0][resources.METRIC_TILES_DONE] == 3
    assert lines[0][resources.METRIC_DIMENSION_DEPLOYMENT] == "LookingGlass"
    assert calls == ["deleted"]
