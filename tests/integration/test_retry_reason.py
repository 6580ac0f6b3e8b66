"""A job whose units are kept for redelivery says why (issue 18): the worker records its last
transient failure on the job record, `status` and `submit --wait` show it; `retry` drops it; a
final job's old reason is not shown."""

import re
import socket
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_worker import JOB, run_worker, settings_for, start_job, tiny_segmenter  # noqa: E402, F401

from looking_glass.pipeline.job_notes import retry_note  # noqa: E402
from looking_glass.pipeline.jobs import JobError, wait_for  # noqa: E402
from looking_glass.pipeline.store import COMPLETE, RUNNING  # noqa: E402


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_reason_of_a_unit_kept_for_redelivery_reaches_status_and_wait(aws, tiny_segmenter, tmp_path, capsys,  # noqa: F811
                                                                          monkeypatch):
    from conftest import run_cli

    from looking_glass.local.deployment import write_state

    session, names, resources = aws
    store, _ = start_job(session, names, resources, [[132486, 152950, 152952]])
    template = f"http://127.0.0.1:{closed_port()}/{{z}}/{{x}}/{{y}}.png"  # nobody listens: transient
    stats = run_worker(session, resources, settings_for(template, retry_delay_s=600), tiny_segmenter)
    assert stats.transient == 1
    job = store.get_job(JOB)
    assert job["status"] == RUNNING and job["retry_at"]
    assert re.fullmatch(r"tile 18/15295[01]/132486: ConnectionError after 1 attempts", job["retry_reason"])

    with pytest.raises(JobError) as ended:  # `submit --wait --timeout`: the reason, not just "not final"
        wait_for(store, JOB, timeout_s=0.5, progress=False, poll_s=0.1)
    message = str(ended.value)
    assert "not final after" in message and f"; retrying: {job['retry_reason']} (last at {job['retry_at']}); " in message
    assert f"looking-glass retry {JOB[:8]}" in message and "\n" not in message
    assert capsys.readouterr().err.count("retrying: ") == 1  # said once while waiting (stderr, no bar)

    state = tmp_path / "embedded.json"
    write_state(state, session.client("s3").meta.endpoint_url, resources, template)
    monkeypatch.setenv("LG_EMBEDDED_STATE", str(state))
    code, out, _ = run_cli(capsys, "status", JOB)
    line = next(x for x in out.splitlines() if x.startswith("retrying "))
    assert code == 0 and "ConnectionError" in line and "docs/results.md#tile-outcomes" in line

    assert store.reopen_job(JOB) and "retry_reason" not in store.get_job(JOB)  # `retry` starts afresh


def test_a_final_job_shows_no_old_retry_reason():
    job = {"job_id": JOB, "status": RUNNING, "retry_reason": "tile 18/1/2: Timeout after 4 attempts",
           "retry_at": "2026-01-01T00:00:00Z"}
    assert retry_note(job).startswith("retrying: tile 18/1/2: Timeout after 4 attempts (last at 2026-01-01T00:00:00Z); ")
    assert "3 work units in the dead-letter queue" in retry_note(job, 3)
    assert retry_note({**job, "status": COMPLETE}) is None and retry_note({"status": RUNNING}) is None
