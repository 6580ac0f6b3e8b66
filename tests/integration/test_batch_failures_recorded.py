"""Failed AWS Batch workers of a job on a stack are written into the job record (issue 16):
``jobs`` marks the job, ``status`` shows the reason and the record keeps it. Against moto's
Batch: the job's workers are submitted by the project's own BatchLauncher and fail as Batch
reports it (terminated with a reason; moto runs no container without Docker)."""

from __future__ import annotations

from dataclasses import dataclass

import looking_glass.cli.jobs as cli_jobs
from looking_glass.cli.main import main as cli_main
from looking_glass.pipeline.jobs import mark_batch_failures, status
from looking_glass.pipeline.store import COMPLETE, RUNNING, ResultsStore

FAILING, HEALTHY, DONE = "a1" * 12, "b2" * 12, "c3" * 12


@dataclass
class StackOnMoto:
    """A deployment of kind "stack" whose clients talk to the moto server."""

    session: object
    resources: object
    kind: str = "stack"
    outputs: dict | None = None  # the stack's outputs where a test gives them (JobQueueArn, ...)

    def client(self, service: str, **kwargs):
        return self.session.client(service, **kwargs)

    def describe(self) -> str:
        return "a stack on moto"


def test_failed_batch_workers_are_recorded_in_the_job_and_marked_in_jobs(aws, batch_queue, monkeypatch, capsys):
    session, names, resources = aws
    dep = StackOnMoto(session, resources)
    store = ResultsStore(session.client("dynamodb"), names.results_table)
    failing = batch_queue.launch(FAILING, 1)
    session.client("batch").terminate_job(jobId=failing, reason="Host EC2 instance was terminated (Spot interruption)")
    store.create_job(FAILING, {"status": RUNNING, "tiles_total": 4, "name": "failing", "worker_job": failing})
    store.create_job(HEALTHY, {"status": RUNNING, "tiles_total": 4, "name": "healthy", "worker_job": "no-such-batch-job"})
    store.create_job(DONE, {"status": COMPLETE, "tiles_total": 4, "name": "done", "worker_job": failing})

    jobs = {j["job_id"]: j for j in mark_batch_failures(dep, store.list_jobs())}
    assert "Spot interruption" in jobs[FAILING]["worker_error"] and failing in jobs[FAILING]["worker_error"]
    assert "worker_error" not in jobs[HEALTHY] and "worker_error" not in jobs[DONE]  # a finished job is left as it was
    recorded = store.get_job(FAILING)
    assert recorded["worker_error"] == jobs[FAILING]["worker_error"] and recorded["status"] == RUNNING
    assert "worker_error" not in store.get_job(DONE)

    monkeypatch.setattr(cli_jobs, "_deployment", lambda args: dep)
    assert cli_main(["jobs"]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:]}
    assert "RUNNING (workers failing)" in rows[FAILING] and "workers failing" not in rows[HEALTHY]

    store.update_job(FAILING, {"worker_error": "stale"})  # status rewrites what it finds
    info = status(dep, FAILING)
    assert "Spot interruption" in info["worker_error"] and store.get_job(FAILING)["worker_error"] == info["worker_error"]


def test_without_a_batch_answer_the_records_stay_as_they_are(aws):
    session, names, resources = aws
    store = ResultsStore(session.client("dynamodb"), names.results_table)
    store.create_job(HEALTHY, {"status": RUNNING, "tiles_total": 4, "worker_job": "x"})
    embedded = StackOnMoto(session, resources, kind="embedded")
    assert mark_batch_failures(embedded, store.list_jobs()) == store.list_jobs()

    class Unreachable(StackOnMoto):
        def client(self, service, **kwargs):
            from botocore.config import Config

            if service != "batch":
                return self.session.client(service, **kwargs)
            return self.session.client("batch", endpoint_url="http://127.0.0.1:9", config=Config(retries={"max_attempts": 1}))

    assert mark_batch_failures(Unreachable(session, resources), store.list_jobs()) == store.list_jobs()
    assert "worker_error" not in store.get_job(HEALTHY)
