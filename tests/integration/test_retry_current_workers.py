"""After ``retry`` starts new AWS Batch workers for a job on a stack, the job record names them
(``worker_job``, and every Batch job of the job in ``worker_jobs``), so ``status``, ``jobs`` and
``submit --wait`` follow the new workers; the first run's failure moves to
``earlier_worker_error`` instead of marking the new run as failing. Against moto's Batch: the
real enumerator handler launches the first workers through the project's BatchLauncher, Batch
terminates them with a reason, then the real retry and ``looking-glass status``/``jobs``."""

from __future__ import annotations

import time

import pytest
from conftest import drain
from test_batch_failures_recorded import StackOnMoto
from test_enumerator import store_of
from test_retry_batch_target import _job_with_lost_units

import looking_glass.cli.jobs as cli_jobs
from looking_glass.cli.main import main as cli_main
from looking_glass.pipeline.jobs import status
from looking_glass.pipeline.retry import retry
from looking_glass.runtime.resources import OUTPUT_JOB_DEFINITION, OUTPUT_JOB_QUEUE

SPOT = "Host EC2 instance was terminated (Spot interruption)"


def _wait_failed(batch, job_id: str) -> None:
    """Wait (30 s at most) until moto's Batch reports ``job_id`` failed: without Docker its
    workers fail as they start."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        (found,) = batch.describe_jobs(jobs=[job_id])["jobs"]
        if found["status"] == "FAILED" or (found.get("arrayProperties") or {}).get("statusSummary", {}).get("FAILED"):
            return
        time.sleep(0.5)
    raise AssertionError(f"Batch job {job_id} did not fail")


@pytest.fixture
def hold_new_batch_jobs():
    """Batch jobs submitted from now on stay SUBMITTED (moto's state manager: a manual
    progression that never comes), so the workers retry starts are alive and well; returns the
    function that lets them run (and fail without Docker), which also runs at the end."""
    from moto.moto_api import state_manager

    def release():
        state_manager.unset_transition("batch::job")

    state_manager.set_transition("batch::job", {"progression": "manual", "times": 10**9})
    yield release
    release()


def _failed_first_run(aws, batch_queue, monkeypatch, hold) -> tuple[StackOnMoto, dict]:
    """A stack deployment and a job whose first Batch workers failed (Batch terminated them, a
    Spot loss) and whose work units were lost: every tile is for retry to redo. Batch jobs
    submitted after it are held (``hold``: the :func:`hold_new_batch_jobs` fixture)."""
    session, _, resources = aws
    hold()  # the first workers run (and fail)
    job = _job_with_lost_units(aws, batch_queue, monkeypatch)
    session.client("batch").terminate_job(jobId=job["worker_job"], reason=SPOT)
    _wait_failed(session.client("batch"), job["worker_job"])
    from moto.moto_api import state_manager

    state_manager.set_transition("batch::job", {"progression": "manual", "times": 10**9})
    outputs = {OUTPUT_JOB_QUEUE: batch_queue.job_queue, OUTPUT_JOB_DEFINITION: batch_queue.job_definition}
    return StackOnMoto(session, resources, outputs=outputs), job


def test_after_a_retry_status_and_jobs_report_the_new_workers_not_the_old_failure(
    aws, batch_queue, monkeypatch, capsys, hold_new_batch_jobs
):
    session, names, _ = aws
    dep, job = _failed_first_run(aws, batch_queue, monkeypatch, hold_new_batch_jobs)
    first = job["worker_job"]
    assert "worker_jobs" not in job  # a record as the enumerator writes it: the first Batch job only
    assert first in status(dep, job["job_id"])["worker_error"]  # the failure is recorded, as status does

    out = retry(dep, job["job_id"])
    launched = out["workers"].split()[2]  # "Batch job ID (N worker(s))"
    assert launched != first
    assert session.client("batch").describe_jobs(jobs=[launched])["jobs"][0]["status"] != "FAILED"

    recorded = store_of(session, names).get_job(job["job_id"])
    assert recorded["worker_job"] == launched and recorded["worker_jobs"] == [first, launched]
    assert not recorded["worker_error"]
    assert "failed" in recorded["earlier_worker_error"] and first in recorded["earlier_worker_error"]

    info = status(dep, job["job_id"])
    assert info["status"] == "RUNNING" and not info.get("worker_error")
    monkeypatch.setattr(cli_jobs, "_deployment", lambda args: dep)
    assert cli_main(["status", job["job_id"]]) == 0
    lines = {line.split()[0]: line.split(None, 1)[1] for line in capsys.readouterr().out.splitlines()}
    assert "worker_error" not in lines and first in lines["earlier_worker_error"]
    assert lines["worker_job"] == launched and lines["worker_jobs"] == f"{first}, {launched}"

    assert cli_main(["jobs"]) == 0
    (row,) = [r for r in capsys.readouterr().out.splitlines() if r.startswith(job["job_id"])]
    assert "RUNNING (retried; earlier workers failed)" in row and "workers failing" not in row


def test_a_failure_nobody_looked_at_is_kept_as_the_earlier_runs_and_new_failures_are_reported(
    aws, batch_queue, monkeypatch, capsys, hold_new_batch_jobs
):
    session, names, _ = aws
    dep, job = _failed_first_run(aws, batch_queue, monkeypatch, hold_new_batch_jobs)  # no status or jobs since the workers failed
    first = job["worker_job"]

    launched = retry(dep, job["job_id"])["workers"].split()[2]
    recorded = store_of(session, names).get_job(job["job_id"])
    assert "failed" in recorded["earlier_worker_error"] and first in recorded["earlier_worker_error"]

    # The new workers fail too: status reports their failure, naming the new Batch job.
    hold_new_batch_jobs()
    session.client("batch").terminate_job(jobId=launched, reason="CannotPullContainerError")
    _wait_failed(session.client("batch"), launched)
    info = status(dep, job["job_id"])
    assert launched in info["worker_error"] and first not in info["worker_error"]
    monkeypatch.setattr(cli_jobs, "_deployment", lambda args: dep)
    assert cli_main(["jobs"]) == 0
    (row,) = [r for r in capsys.readouterr().out.splitlines() if r.startswith(job["job_id"])]
    assert "RUNNING (workers failing)" in row


def test_a_second_retry_appends_to_the_jobs_batch_jobs(aws, batch_queue, monkeypatch, hold_new_batch_jobs):
    session, names, resources = aws
    dep, job = _failed_first_run(aws, batch_queue, monkeypatch, hold_new_batch_jobs)
    second = retry(dep, job["job_id"])["workers"].split()[2]
    drain(session.client("sqs"), resources.tile_queue_url)  # taken (in flight): --force
    third = retry(dep, job["job_id"], force=True)["workers"].split()[2]
    recorded = store_of(session, names).get_job(job["job_id"])
    assert recorded["worker_jobs"] == [job["worker_job"], second, third] and recorded["worker_job"] == third
