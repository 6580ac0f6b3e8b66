"""Worker start-up failures and crash loops reach the job (issue 16): the local launcher sees
each failed worker with its reason, the embedded run records it on the job, fails the job after a
few failures in a row and stops relaunching; `status` shows the reason, `jobs` marks the job;
on a stack, a failed AWS Batch job of the job is shown the same way."""

import sys
import time

import pytest

from looking_glass.pipeline import launchers
from looking_glass.pipeline.jobs import batch_failure
from looking_glass.pipeline.launchers import MAX_FAILURES_IN_A_ROW, LocalProcessLauncher
from looking_glass.pipeline.store import FAILED, RUNNING, ResultsStore

JOB = "feedfacefeedfacefeedface"


def wait_until(check, timeout=60.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return True
        time.sleep(0.1)
    return False


@pytest.fixture
def failing_worker(monkeypatch):
    """The worker's command replaced by one that logs like a worker and exits 2 at start-up."""
    script = "import sys; print('2026-01-01 ERROR worker: bad imagery source: /no/such.tif: no such file'); sys.exit(2)"
    monkeypatch.setattr(launchers, "worker_command", lambda: [sys.executable, "-c", script])


def test_the_local_launcher_reports_each_failure_with_its_reason(tmp_path, failing_worker):
    launcher = LocalProcessLauncher({}, tmp_path, max_local_workers=1)
    seen = []
    launcher.on_failure = lambda job, reason, n: seen.append((job, reason, n))
    for i in range(MAX_FAILURES_IN_A_ROW):
        launcher.launch(JOB if i == 0 else "queue", 1)
        assert wait_until(lambda i=i: len(seen) == i + 1)
    assert [n for _, _, n in seen] == list(range(1, MAX_FAILURES_IN_A_ROW + 1))
    assert seen[0][0] == JOB and "status 2" in seen[0][1] and "bad imagery source: /no/such.tif" in seen[0][1]
    assert launcher.gave_up and "no such file" in launcher.last_failure


def test_a_worker_that_succeeds_resets_the_count(tmp_path, monkeypatch):
    launcher = LocalProcessLauncher({}, tmp_path, max_local_workers=1)
    launcher.failures_in_a_row = MAX_FAILURES_IN_A_ROW - 1
    monkeypatch.setattr(launchers, "worker_command", lambda: [sys.executable, "-c", "pass"])
    launcher.launch("queue", 1)
    assert wait_until(lambda: launcher.failures_in_a_row == 0) and not launcher.gave_up


def test_the_embedded_run_records_failures_and_fails_the_job_after_a_few(aws, tmp_path, failing_worker, capsys, monkeypatch):
    """As `LG_IMAGERY_GEOTIFF=... looking-glass up` once did: every worker exits at start-up."""
    from conftest import run_cli

    from looking_glass.local.deployment import write_state
    from looking_glass.local.embedded import EmbeddedStack

    session, names, resources = aws
    store = ResultsStore(session.client("dynamodb"), names.results_table)
    store.create_job(JOB, {"status": RUNNING, "tiles_total": 4, "name": "loop"})
    stack = EmbeddedStack.__new__(EmbeddedStack)  # only what _worker_failed needs
    stack.session, stack.resources = session, resources
    launcher = LocalProcessLauncher({}, tmp_path, max_local_workers=1)
    launcher.on_failure = stack._worker_failed
    state = tmp_path / "embedded.json"
    write_state(state, session.client("s3").meta.endpoint_url, resources, "http://127.0.0.1:9/{z}/{x}/{y}.png")
    monkeypatch.setenv("LG_EMBEDDED_STATE", str(state))

    launcher.launch(JOB, 1)
    assert wait_until(lambda: (store.get_job(JOB) or {}).get("worker_error"))
    job = store.get_job(JOB)
    assert job["status"] == RUNNING and "bad imagery source" in job["worker_error"]
    code, out, _ = run_cli(capsys, "jobs")
    assert code == 0 and "RUNNING (workers failing)" in out
    code, out, _ = run_cli(capsys, "status", JOB)
    assert code == 0 and "worker_error" in out and "bad imagery source" in out

    for _ in range(MAX_FAILURES_IN_A_ROW - 1):  # the embedded run's relaunches for the queue
        n = launcher.failures_in_a_row
        launcher.launch("queue", 1)
        assert wait_until(lambda n=n: launcher.failures_in_a_row == n + 1)
    assert wait_until(lambda: store.get_job(JOB)["status"] == FAILED)
    job = store.get_job(JOB)
    assert f"workers failed {MAX_FAILURES_IN_A_ROW} times in a row" in job["reason"] and "bad imagery source" in job["reason"]
    assert launcher.gave_up


class FakeBatch:
    def __init__(self, parent, children=()):
        self.parent, self.children = parent, {c["jobId"]: c for c in children}

    def describe_jobs(self, jobs):
        return {"jobs": [self.parent if j == self.parent["jobId"] else self.children[j] for j in jobs]}

    def list_jobs(self, arrayJobId, jobStatus):  # noqa: N803 - boto3's names
        return {"jobSummaryList": [{"jobId": j} for j, c in self.children.items() if c["status"] == jobStatus]}


def test_failed_batch_workers_are_shown_with_their_reason():
    child = {"jobId": "p:1", "status": "FAILED", "statusReason": "Essential container in task exited",
             "container": {"exitCode": 2, "reason": ""}}
    parent = {"jobId": "p", "status": "RUNNING", "arrayProperties": {"size": 2, "statusSummary": {"FAILED": 1, "RUNNING": 1}}}
    text = batch_failure(FakeBatch(parent, [child]), "p")
    assert "1 worker(s) failed" in text and "exit status 2" in text and "Essential container" in text
    assert batch_failure(FakeBatch({"jobId": "q", "status": "RUNNING"}), "q") is None
    single = {"jobId": "s", "status": "FAILED", "statusReason": "CannotPullContainerError", "container": {}}
    assert "CannotPullContainerError" in batch_failure(FakeBatch(single), "s")


def test_waiting_stops_when_the_workers_failed(aws):
    """`submit --wait` on a stack: a failed AWS Batch job of the job ends the wait with its reason."""
    from looking_glass.pipeline.jobs import JobError, wait_for

    session, names, _ = aws
    store = ResultsStore(session.client("dynamodb"), names.results_table)
    store.create_job(JOB, {"status": RUNNING, "tiles_total": 4, "name": "w", "worker_job": "b-1"})
    single = {"jobId": "b-1", "status": "FAILED", "statusReason": "CannotPullContainerError", "container": {}}
    t0 = time.monotonic()
    with pytest.raises(JobError, match="cannot finish: AWS Batch job b-1.*CannotPullContainerError"):
        wait_for(store, JOB, timeout_s=60, progress=False, poll_s=0.05, check_every_s=0.2,
                 worker_check=lambda job: batch_failure(FakeBatch(single), job["worker_job"]))
    assert time.monotonic() - t0 < 10


@pytest.mark.parametrize("variable", ["LG_IMAGERY_GEOTIFF", "LG_IMAGERY_SECRET", "LG_TILE_URL_TEMPLATE"])
def test_up_refuses_worker_imagery_set_in_the_shell(capsys, tmp_path, monkeypatch, variable):
    """The cause of the crash loop the issue saw: `LG_IMAGERY_GEOTIFF=... looking-glass up` put
    a second imagery source into every worker's environment. Now `up` says what to do instead."""
    from conftest import run_cli

    monkeypatch.setenv(variable, "/data/ortho.tif")
    code, _, err = run_cli(capsys, "up", "--embedded", str(tmp_path / "state.json"))
    assert code == 2 and f"{variable} set in this shell" in err and "--imagery SOURCE" in err
    assert not (tmp_path / "state.json").exists()


def test_an_embedded_retry_moves_the_workers_failure_to_history(aws, tmp_path, capsys, monkeypatch):
    """`retry` on the embedded run: the failure the earlier local workers recorded
    (``worker_error``, ``worker_failures``) becomes ``earlier_worker_error``, so neither `status`
    nor `jobs` presents it as the new workers' (it stayed the current error before), and once the
    new workers do the tile the finished job shows no worker error at all."""
    from decimal import Decimal

    from conftest import run_cli

    from looking_glass.grid import quadkey
    from looking_glass.local.deployment import write_state
    from looking_glass.local.embedded import EmbeddedStack
    from looking_glass.pipeline.table import TileResult

    session, names, resources = aws
    store = ResultsStore(session.client("dynamodb"), names.results_table)
    store.create_job(JOB, {"status": RUNNING, "tiles_total": 1, "name": "again", "worker_job": "local-feedface-x1"})
    x, y = 152_024, 131_472
    failed = TileResult(x, y, 18, quadkey(x, y, 18), "failed", reason="HTTP 500", unit="u1")
    store.record_tiles(JOB, [failed], {"model_id": "m", "zoom": 18})
    stack = EmbeddedStack.__new__(EmbeddedStack)  # only what _worker_failed needs
    stack.session, stack.resources = session, resources
    stack._worker_failed(JOB, "worker exited with status 2 (error): bad imagery source", 1)
    state = tmp_path / "embedded.json"
    write_state(state, session.client("s3").meta.endpoint_url, resources, "http://127.0.0.1:9/{z}/{x}/{y}.png")
    monkeypatch.setenv("LG_EMBEDDED_STATE", str(state))

    code, out, err = run_cli(capsys, "retry", JOB)
    assert code == 0, err
    job = store.get_job(JOB)
    assert job["status"] == RUNNING and not job.get("worker_error") and "worker_failures" not in job
    assert "bad imagery source" in job["earlier_worker_error"]
    code, out, _ = run_cli(capsys, "status", JOB)
    keys = [line.split()[0] for line in out.splitlines()]
    assert code == 0 and "worker_error" not in keys and "worker_failures" not in keys and "earlier_worker_error" in keys
    code, out, _ = run_cli(capsys, "jobs")
    assert code == 0 and "RUNNING (retried; earlier workers failed)" in out and "workers failing" not in out

    done = TileResult(x, y, 18, failed.quadkey, "done", Decimal(3), unit="u2")  # the retry's workers did it
    store.record_tiles(JOB, [done], {"model_id": "m", "zoom": 18})
    assert store.try_complete(JOB)
    code, out, _ = run_cli(capsys, "status", JOB)
    lines = {line.split()[0]: line.split(None, 1)[1] for line in out.splitlines()}
    assert code == 0 and lines["status"] == "COMPLETE" and "worker_error" not in lines


def test_after_giving_up_a_retry_or_another_active_model_is_a_new_chance(aws, tmp_path, failing_worker):
    """The embedded run stops starting workers after a few failures in a row; a job retried since
    then, or another active model, lets it start them again (the launcher forgets the count)."""
    from looking_glass.local.embedded import EmbeddedStack
    from looking_glass.model.registry import parameter_name
    from looking_glass.pipeline.store import utc_now

    session, names, resources = aws
    store = ResultsStore(session.client("dynamodb"), names.results_table)
    store.create_job(JOB, {"status": RUNNING, "tiles_total": 4, "name": "loop", "messages_total": 1})
    stack = EmbeddedStack.__new__(EmbeddedStack)  # what _worker_failed and new_chance need
    stack.session, stack.resources = session, resources
    launcher = LocalProcessLauncher({}, tmp_path, max_local_workers=1)
    launcher.on_failure = stack._worker_failed
    for _ in range(MAX_FAILURES_IN_A_ROW):
        n = launcher.failures_in_a_row
        launcher.launch("queue", 1)
        assert wait_until(lambda n=n: launcher.failures_in_a_row == n + 1)
    assert launcher.gave_up and wait_until(lambda: store.get_job(JOB)["status"] == FAILED)
    since, model = utc_now(), stack.active_model()
    assert model == "" and stack.new_chance(since, model) is None

    reason = store.get_job(JOB)["reason"]
    assert store.reopen_job(JOB, reason)  # what `retry` does to a FAILED job
    job = store.get_job(JOB)
    assert job["status"] == RUNNING and "reason" not in job and job["earlier_reason"] == reason
    assert stack.new_chance(since, model) == f"job {JOB} was retried"
    launcher.new_chance()
    assert not launcher.gave_up

    later = "9999-01-01T00:00:00+00:00"  # no retry after this moment: only the model can say
    session.client("ssm").put_parameter(Name=parameter_name(resources.masks_bucket), Value="s3://b/registry/m/2/model.keras",
                                        Type="String", Overwrite=True)
    assert stack.new_chance(later, model) == "the active model is now s3://b/registry/m/2/model.keras"
