"""Starting workers for a job: AWS Batch array jobs in the cloud, local processes on one machine.

The enumerator calls ``launcher.launch(job_id, workers)`` and does not know which it got.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import threading
from pathlib import Path

# The worker's process (the Batch image runs the same module): started as
# ``python -m looking_glass.pipeline.worker_main``, so an installed package is all it needs.
WORKER_MODULE = "looking_glass.pipeline.worker_main"


def worker_command() -> list[str]:
    """The command line of one worker process: this interpreter running :data:`WORKER_MODULE`."""
    return [sys.executable, "-m", WORKER_MODULE]


class BatchLauncher:
    """Submits one AWS Batch job per launch: an array job of ``workers`` children (a plain job for 1)."""

    def __init__(self, batch_client, job_queue: str, job_definition: str):
        self.batch = batch_client
        self.job_queue = job_queue
        self.job_definition = job_definition

    def submission(self, job_id: str, workers: int) -> dict:
        """The SubmitJob parameters of ``workers`` workers of ``job_id`` (``LG_JOB_ID`` set)."""
        kwargs = {
            "jobName": f"looking-glass-{job_id}",
            "jobQueue": self.job_queue,
            "jobDefinition": self.job_definition,
            "containerOverrides": {"environment": [{"name": "LG_JOB_ID", "value": job_id}]},
        }
        if workers > 1:  # Batch array jobs need at least 2 children
            kwargs["arrayProperties"] = {"size": workers}
        return kwargs

    def launch(self, job_id: str, workers: int) -> str:
        """Submit the workers of ``job_id``; returns the Batch job id. Raises botocore's
        ``ClientError`` when Batch refuses (no permission, an inactive definition, ...)."""
        return self.batch.submit_job(**self.submission(job_id, workers))["jobId"]

    def aws_command(self, job_id: str, workers: int) -> str:
        """The same submission as an ``aws batch submit-job`` command line a user can run
        (shell-quoted), for messages that tell them how to start the workers by hand."""
        kwargs = self.submission(job_id, workers)
        argv = ["aws", "batch", "submit-job", "--job-name", kwargs["jobName"], "--job-queue", kwargs["jobQueue"],
                "--job-definition", kwargs["jobDefinition"],
                "--container-overrides", json.dumps(kwargs["containerOverrides"], separators=(",", ":"))]
        if "arrayProperties" in kwargs:
            argv += ["--array-properties", f"size={kwargs['arrayProperties']['size']}"]
        return shlex.join(argv)


# Worker processes that exit with an error one after another before the embedded run stops
# starting new ones for the queue (and fails the jobs waiting on them with the reason).
MAX_FAILURES_IN_A_ROW = 3


def failure_reason(code: int, log_path: Path) -> str:
    """Why a worker process ended with exit status ``code``: the status and its log's last error
    line (the worker logs one line saying why before it exits 2 or 3)."""
    meaning = {2: "bad settings or imagery source", 3: "the model cannot be loaded"}.get(code, "it crashed")
    line = ""
    try:
        with open(log_path, "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - 16384))
            tail = f.read().decode("utf-8", "replace").splitlines()
        errors = [t for t in tail if " ERROR " in t or "Error" in t or "error:" in t]
        line = (errors or tail or [""])[-1].strip()
    except OSError:
        pass
    reason = f"worker exited with status {code} ({meaning})"
    return f"{reason}: {line[:500]}" if line else reason


class LocalProcessLauncher:
    """Runs the Batch worker's own entry point as local processes, one per array child (at most
    ``max_local_workers``), logging to ``log_dir/worker-<job>-<index>.log``.

    Every process is watched: one that exits with an error calls ``on_failure(job_id, reason,
    failures_in_a_row)`` (a worker that exits 0 resets the count); after
    :data:`MAX_FAILURES_IN_A_ROW` failures in a row ``gave_up`` is true, and the embedded run stops
    starting workers for the queue."""

    def __init__(self, environment: dict[str, str], log_dir: Path, max_local_workers: int = 2):
        self.environment = environment
        self.log_dir = Path(log_dir)
        self.max_local_workers = max_local_workers
        self.processes: list[subprocess.Popen] = []
        self._lock = threading.Lock()
        self.on_failure = None  # callable (job_id, reason, failures_in_a_row), or None
        self.failures_in_a_row = 0
        self.last_failure: str | None = None
        self._stopping = False

    @property
    def gave_up(self) -> bool:
        """Whether the last :data:`MAX_FAILURES_IN_A_ROW` workers all failed."""
        return self.failures_in_a_row >= MAX_FAILURES_IN_A_ROW

    def new_chance(self) -> None:
        """Forget the failures in a row (:attr:`gave_up` false again): something that could make
        the workers start fine changed (a ``retry``, another active model), so the embedded run
        starts workers for the queue again; three more failures in a row and it gives up again."""
        with self._lock:
            self.failures_in_a_row = 0

    def _watch(self, proc: subprocess.Popen, job_id: str, log_path: Path) -> None:
        code = proc.wait()
        if self._stopping and code != 0:
            return  # stopped by us (SIGTERM/SIGKILL): not the worker's failure
        with self._lock:
            if code == 0:
                self.failures_in_a_row = 0
                return
            self.failures_in_a_row += 1
            in_a_row = self.failures_in_a_row
            self.last_failure = reason = failure_reason(code, log_path)
        callback = self.on_failure
        if callback is not None:
            try:
                callback(job_id, reason, in_a_row)
            except Exception:  # noqa: BLE001 - reporting must not take the watcher down
                import logging

                logging.getLogger(__name__).exception("could not record a worker failure")

    def launch(self, job_id: str, workers: int) -> str:
        """Start ``min(workers, max_local_workers)`` worker processes for ``job_id``; returns a
        local launch id (``local-<job>-x<count>``)."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        count = min(workers, self.max_local_workers)
        for index in range(count):
            env = {
                **os.environ,
                **self.environment,
                "LG_JOB_ID": job_id,
                "AWS_BATCH_JOB_ARRAY_INDEX": str(index),
            }
            log_path = self.log_dir / f"worker-{job_id[:8]}-{index}.log"
            log = open(log_path, "ab")
            proc = subprocess.Popen(
                worker_command(), env=env, stdout=log, stderr=subprocess.STDOUT
            )
            log.close()
            with self._lock:
                self.processes.append(proc)
            threading.Thread(target=self._watch, args=(proc, job_id, log_path), daemon=True).start()
        return f"local-{job_id[:8]}-x{count}"

    def running(self) -> int:
        """How many of the started processes are still running."""
        with self._lock:
            return sum(p.poll() is None for p in self.processes)

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM every running worker, then SIGKILL those still running after ``timeout`` s each."""
        with self._lock:
            procs = list(self.processes)
            self._stopping = True
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()


_local_launcher: LocalProcessLauncher | None = None


def register_local_launcher(launcher: LocalProcessLauncher | None) -> None:
    """The embedded run registers its launcher; the handler then picks it up by setting."""
    global _local_launcher
    _local_launcher = launcher


def launcher_for(settings, session):
    """The launcher that ``settings.launcher`` names: the registered local one, or AWS Batch.

    Raises ``RuntimeError`` for ``local`` without an active embedded run.
    """
    if settings.launcher == "local":
        if _local_launcher is None:
            raise RuntimeError("LG_WORKER_LAUNCHER=local but no embedded run is active")
        return _local_launcher
    return BatchLauncher(
        session.client("batch"), settings.batch_job_queue, settings.batch_job_definition
    )
