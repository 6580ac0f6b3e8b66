"""Job operations of the CLI: submit an AOI, follow a job, describe it (retrying what did not
finish: :mod:`looking_glass.pipeline.retry`).

All of it works the same against a deployed stack and the embedded run (``deployment``).
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any, Protocol

from looking_glass.errors import EXIT_BAD_INPUT, LookingGlassError
from looking_glass.grid import ZOOM
from looking_glass.pipeline.enumerator import (
    MAX_AOI_BYTES,
    job_id_for_aoi,
    upload_aoi,
)
from looking_glass.pipeline.store import COMPLETE, ENQUEUEING, FAILED, RUNNING, ResultsStore, utc_now
from looking_glass.runtime.imagery_sources import ImageryRegistry, ImagerySourcesError, check_source_name
from looking_glass.runtime.resources import TRIGGER_PREFIX, TRIGGER_SUFFIX, DeployedResources
from looking_glass.tiling.aoi import INPUTS_MEMBER, AoiError, parse_aoi
from looking_glass.tiling.cover import count_tiles

LABEL_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class JobError(LookingGlassError, RuntimeError):
    """The operation cannot go ahead; the message says why."""


class JobDeployment(Protocol):
    """What job operations need of a deployment: its kind (``"stack"`` or ``"embedded"``), its
    resources and boto3 clients. :class:`looking_glass.local.deployment.Deployment` is one; the
    pipeline does not import it (``local`` builds on ``pipeline``, not the other way round)."""

    kind: str
    resources: DeployedResources

    def client(self, service: str, **kwargs: Any) -> Any:
        """A boto3 client of ``service`` for this deployment."""

    def describe(self) -> str:
        """The deployment in words, for messages."""


def store_for(dep: JobDeployment) -> ResultsStore:
    """The deployment's results table."""
    return ResultsStore(dep.client("dynamodb"), dep.resources.results_table)


def get_job(store: ResultsStore, job_id: str) -> dict:
    """The job record; JobError when there is none."""
    job = store.get_job(job_id)
    if job is None:
        raise JobError(f"no job {job_id!r} in table {store.table} (see `looking-glass jobs`)", exit_code=EXIT_BAD_INPUT)
    return job


# ---- submit -------------------------------------------------------------------------------------
def prepare_submission(data: bytes, filename: str, label: str | None = None,
                       inputs: dict | None = None) -> tuple[bytes, str, object, int]:
    """Validate an AOI with the enumerator's own rules; returns (bytes to upload, object name
    under the trigger prefix, the parsed AOI, its zoom-18 tile count). ``inputs`` (imagery
    name, model URI, rerun time) go into the document's ``"looking_glass"`` member, so they are
    part of the job's identity (:func:`looking_glass.pipeline.enumerator.job_id_for_aoi`).
    Raises JobError."""
    if len(data) > MAX_AOI_BYTES:
        raise JobError(f"AOI file is {len(data)} bytes, above the {MAX_AOI_BYTES} byte limit", exit_code=EXIT_BAD_INPUT)
    if label is not None and not LABEL_PATTERN.match(label):
        raise JobError(
            f"--name {label!r}: use 1-100 letters, digits, '.', '_' or '-', starting with a letter or digit",
            exit_code=EXIT_BAD_INPUT,
        )
    stem = Path(filename).name.removesuffix(TRIGGER_SUFFIX).removesuffix(".json")
    try:
        aoi = parse_aoi(data, default_name=label or stem)
    except AoiError as exc:
        raise JobError(f"AOI refused: {exc}", exit_code=exc.exit_code) from None
    if label is not None or inputs:
        doc = json.loads(data.decode("utf-8-sig"))
        if label is not None:
            # The enumerator names a job after the GeoJSON's own "name" member first.
            doc["name"] = label
            aoi.name = label
        if inputs:
            doc[INPUTS_MEMBER] = inputs
            aoi.imagery, aoi.model = inputs.get("imagery"), inputs.get("model", "")
        data = json.dumps(doc).encode()
    from looking_glass.tiling.plan import cover_within_limits, job_tile_cap

    try:  # the enumerator's limits and reasons (tile cap, cover work, zero tiles)
        tiles = count_tiles(cover_within_limits(aoi.geometry, ZOOM, job_tile_cap()))
    except AoiError as exc:
        raise JobError(f"AOI refused: {exc}", exit_code=exc.exit_code) from None
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", label or stem).strip("-.") or "aoi"
    return data, f"{safe}{TRIGGER_SUFFIX}", aoi, tiles


def imagery_registry(dep: JobDeployment) -> ImageryRegistry | None:
    """The deployment's imagery registry where it is known (``dep.imagery``: the embedded run's
    state file, a stack's ``ImagerySources`` output), else None."""
    return getattr(dep, "imagery", None)


def check_imagery_name(dep: JobDeployment, imagery: str | None) -> None:
    """JobError unless ``imagery`` (None: the default) can name one of the deployment's sources
    (with close names for a mistyped one); only the name's form is checked where the registry
    is not known here (a stack deployed before its ``ImagerySources`` output: its enumerator
    refuses an unregistered name, and the job FAILS with the same reason)."""
    if imagery is None:
        return
    try:
        check_source_name(imagery, "--imagery")
    except ImagerySourcesError as exc:
        raise JobError(str(exc), exit_code=EXIT_BAD_INPUT) from None
    registry = imagery_registry(dep)
    reason = registry.unknown(imagery) if registry is not None else None
    if reason:
        raise JobError(f"--imagery: {reason}", exit_code=EXIT_BAD_INPUT)


def submit(dep: JobDeployment, data: bytes, filename: str, label: str | None = None,
           imagery: str | None = None, model: str = "", rerun: bool = False) -> dict:
    """Upload an AOI (GeoJSON bytes) to the trigger bucket as a job on the registered ``imagery``
    source (None: the default) with ``model`` (what the workers will load, as
    :func:`looking_glass.pipeline.job_model.deployment_model` names it);
    returns the job id and what was sent. When a job of the very same inputs exists, nothing is
    uploaded and ``existing`` holds its record; ``rerun`` makes a new job anyway."""
    check_imagery_name(dep, imagery)
    inputs = {"model": model, **({"imagery": imagery} if imagery else {}), **({"rerun": utc_now()} if rerun else {})}
    body, name, aoi, tiles = prepare_submission(data, filename, label, inputs)
    key = f"{TRIGGER_PREFIX}{name}"
    registry = imagery_registry(dep)
    digest = registry.digest(imagery) if registry is not None else ""  # the enumerator's own
    out = {
        "job_id": job_id_for_aoi(dep.resources.trigger_bucket, key, body, digest),
        "key": f"s3://{dep.resources.trigger_bucket}/{key}",
        "name": aoi.name,
        "tiles": tiles,
        "warnings": list(aoi.warnings),
        "existing": None,
    }
    out["existing"] = store_for(dep).get_job(out["job_id"])
    if out["existing"] is None:
        upload_aoi(dep.client("s3"), dep.resources.trigger_bucket, name, body, digest)
    return out


def wait_for(store: ResultsStore, job_id: str, timeout_s: float = 3600.0, progress: bool = True,
             poll_s: float = 1.0, start_timeout_s: float = 120.0, worker_check=None,
             check_every_s: float = 30.0) -> dict:
    """Follow a job until COMPLETE or FAILED, with a bar of final tiles by outcome, tiles/s and ETA
    (:class:`looking_glass.pipeline.progress.JobProgress`).

    ``worker_check`` (optional; called with the job record every ``check_every_s`` while the job
    runs) returns why the job's workers failed, or None: e.g. :func:`batch_failure` for a stack.
    A failure ends the wait with a JobError saying why (the job cannot finish without workers)."""
    from looking_glass.pipeline.job_notes import retry_kind, retry_note
    from looking_glass.pipeline.progress import JobProgress

    started = time.monotonic()
    checked = started
    bar = JobProgress(f"job {job_id[:8]}", enabled=progress)
    said = None  # the kind of transient failure last said (once per kind, not per unit)
    try:
        while True:
            job = store.get_job(job_id)
            now = time.monotonic()
            if job is None and now - started > start_timeout_s:
                raise JobError(f"job {job_id} did not appear within {start_timeout_s:.0f} s: is the enumerator running?")
            bar.update(job)
            if job is not None and retry_kind(job) not in (None, said):
                said = retry_kind(job)
                bar.write(retry_note(job))
            if job is not None and job["status"] in (COMPLETE, FAILED):
                return job
            if worker_check is not None and job is not None and now - checked >= check_every_s:
                checked = now
                failure = worker_check(job)
                if failure:
                    raise JobError(f"job {job_id} cannot finish: {failure}")
            if now - started > timeout_s:
                note = retry_note(job) if job else None
                raise JobError(f"job {job_id} not final after {timeout_s:.0f} s (status {job and job['status']})"
                               + (f"; {note}" if note else ""))
            time.sleep(poll_s)
    finally:
        bar.close()


# ---- dead-letter queue --------------------------------------------------------------------------
def _job_of(body: str) -> str | None:
    try:
        doc = json.loads(body)
    except (json.JSONDecodeError, TypeError):
        return None
    return doc.get("job_id") if isinstance(doc, dict) else None


def dead_letters(sqs, dlq_url: str, job_id: str, hold_s: int = 60) -> list[dict]:
    """Receive every message of the DLQ; return this job's (held invisible for ``hold_s``), and
    make every other message visible again at once."""
    mine, others = [], []
    empty = 0
    while empty < 2:
        msgs = sqs.receive_message(
            QueueUrl=dlq_url, MaxNumberOfMessages=10, VisibilityTimeout=hold_s, WaitTimeSeconds=0,
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not msgs:
            empty += 1
            continue
        empty = 0
        for m in msgs:
            (mine if _job_of(m["Body"]) == job_id else others).append(m)
    for i in range(0, len(others), 10):
        sqs.change_message_visibility_batch(
            QueueUrl=dlq_url,
            Entries=[{"Id": str(k), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
                     for k, m in enumerate(others[i : i + 10])],
        )
    return mine


def release(sqs, dlq_url: str, messages: list[dict]) -> None:
    """Make received dead-letter messages visible again at once (10 per request)."""
    for i in range(0, len(messages), 10):
        sqs.change_message_visibility_batch(
            QueueUrl=dlq_url,
            Entries=[{"Id": str(k), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
                     for k, m in enumerate(messages[i : i + 10])],
        )


def queue_depth(sqs, url: str) -> int:
    """Messages on the queue, visible or in flight (SQS's approximate counts)."""
    attrs = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])


# ---- status -------------------------------------------------------------------------------------
def status(dep: JobDeployment, job_id: str) -> dict:
    """The job record, tile failure reasons (counted) and the job's dead-letter messages."""
    store = store_for(dep)
    job = get_job(store, job_id)
    reasons: Counter = Counter()
    for item in store.query_tiles(job_id, attributes=("status", "reason")):
        if item["status"] == "failed":
            reasons[item.get("reason") or "(no reason recorded)"] += 1
    sqs = dep.client("sqs")
    held = dead_letters(sqs, dep.resources.tile_dlq_url, job_id, hold_s=30)
    dlq_reasons: Counter = Counter()
    for m in held:
        dlq_reasons[(m.get("MessageAttributes") or {}).get("reason", {}).get("StringValue", "")] += 1
    release(sqs, dep.resources.tile_dlq_url, held)
    total, final = int(job.get("tiles_total", 0)), int(job.get("tiles_final", 0))
    batch_error = None
    if dep.kind == "stack" and job.get("status") in (RUNNING, ENQUEUEING) and job.get("worker_job"):
        batch_error = batch_failure(dep.client("batch"), str(job["worker_job"]))
        if batch_error:
            record_worker_error(store, job, batch_error)
    return {
        **job,
        **({"worker_error": batch_error} if batch_error else {}),
        "progress_pct": round(100 * final / total, 1) if total else None,
        "tiles_pending": max(total - final, 0),
        "tile_failure_reasons": dict(reasons.most_common()),
        "dlq_messages": len(held),
        "deployment": dep.describe(),
    }


def batch_failure(batch, worker_job: str) -> str | None:
    """Why the job's AWS Batch workers failed, when they did: the Batch job's (or, for an array
    job, a failed child's) status reason and exit code; None while they run or succeeded, or
    when Batch cannot be asked."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        found = batch.describe_jobs(jobs=[worker_job]).get("jobs", [])
        return _described_failure(batch, found[0]) if found else None
    except (ClientError, BotoCoreError):
        return None


def _described_failure(batch, parent: dict) -> str | None:
    """:func:`batch_failure` for a Batch job already described (``describe_jobs``)."""
    worker_job = parent["jobId"]
    summary = (parent.get("arrayProperties") or {}).get("statusSummary") or {}
    failed_children = int(summary.get("FAILED", 0))
    if parent.get("status") != "FAILED" and not failed_children:
        return None
    detail = parent
    if failed_children and parent.get("arrayProperties", {}).get("size"):
        children = batch.list_jobs(arrayJobId=worker_job, jobStatus="FAILED").get("jobSummaryList", [])
        if children:
            detail = batch.describe_jobs(jobs=[children[0]["jobId"]]).get("jobs", [detail])[0]
    count = f"{failed_children} worker(s)" if failed_children else "the workers"
    return f"AWS Batch job {worker_job}: {count} failed ({failure_detail(detail)})"[:1000]


def failure_detail(detail: dict) -> str:
    """A failed Batch job's reason in words: its status reason, the container's reason and exit
    status (``describe_jobs`` entries and the ``detail`` of EventBridge "Batch Job State Change"
    events have the same shape)."""
    container = detail.get("container") or {}
    parts = [detail.get("statusReason") or "", container.get("reason") or ""]
    if container.get("exitCode") is not None:
        parts.append(f"exit status {container['exitCode']}")
    return "; ".join(p for p in parts if p) or "no reason given"


def record_worker_error(store: ResultsStore, job: dict, reason: str) -> dict:
    """Write ``reason`` into the job record as ``worker_error`` (while the job is RUNNING or
    ENQUEUEING, and only when it says something new), so ``jobs`` marks the job and the record
    keeps why; returns the job with it."""
    reason = reason[:1000]
    if job.get("worker_error") != reason:
        store.update_job(str(job["job_id"]), {"worker_error": reason}, only_if_status=(RUNNING, ENQUEUEING))
    return {**job, "worker_error": reason}


def record_new_workers(store: ResultsStore, batch, job: dict, launched: str | None) -> dict:
    """Record that ``retry`` started new workers for ``job`` (its record). On a stack
    ``launched`` is their AWS Batch job: it becomes the job's ``worker_job``, the Batch job that
    ``status``, ``jobs`` and ``submit --wait`` ask about, and is appended to ``worker_jobs`` (every
    Batch job of the job, the first first; for a record written before retry kept the list, the
    first is its ``worker_job``). ``launched`` None: the embedded run, whose ``up`` starts local
    workers for the queued work itself. Either way the earlier workers' failure moves from
    ``worker_error`` (emptied: the new workers have not failed) to ``earlier_worker_error``, and the
    embedded run's count of failed workers (``worker_failures``) is removed; on a stack, where no
    failure was recorded, the earlier Batch job is asked (:func:`batch_failure`, ``batch`` a boto3
    Batch client). Returns the job with the new values (as it is when there was nothing to write)."""
    previous = str(job.get("worker_job") or "")
    values: dict = {"worker_error": ""}
    if launched is not None:
        history = [str(j) for j in job.get("worker_jobs") or ([previous] if previous else [])]
        values.update(worker_job=launched, worker_jobs=[*history, launched])
    earlier = job.get("worker_error") or (batch_failure(batch, previous) if launched is not None and previous else None)
    if earlier:
        values["earlier_worker_error"] = str(earlier)[:1000]
    stale = tuple(k for k in ("worker_failures",) if k in job)
    if launched is None and not earlier and not stale:
        return job  # the local workers never failed: nothing to move
    store.update_job(str(job["job_id"]), values, remove=stale)
    return {**{k: v for k, v in job.items() if k not in stale}, **values}


def mark_batch_failures(dep: JobDeployment, jobs: list[dict]) -> list[dict]:
    """``jobs`` (records, e.g. from ``list_jobs``) with the failures of their AWS Batch workers
    recorded (:func:`record_worker_error`): on a stack, the Batch jobs of every RUNNING or
    ENQUEUEING job are described in calls of up to 100 (a failed array job costs two more calls);
    elsewhere, or when Batch cannot be asked, the jobs as they are."""
    from botocore.exceptions import BotoCoreError, ClientError

    live = {str(j["worker_job"]): j for j in jobs if j.get("status") in (RUNNING, ENQUEUEING) and j.get("worker_job")}
    if dep.kind != "stack" or not live:
        return jobs
    batch, store, marked = dep.client("batch"), store_for(dep), {}
    ids = list(live)
    try:
        for i in range(0, len(ids), 100):
            for described in batch.describe_jobs(jobs=ids[i : i + 100]).get("jobs", []):
                reason = _described_failure(batch, described)
                job = live.get(described.get("jobId"))
                if reason and job is not None:
                    marked[job["job_id"]] = record_worker_error(store, job, reason)
    except (ClientError, BotoCoreError):
        pass  # Batch cannot be asked: the records as they are
    return [marked.get(j["job_id"], j) for j in jobs]
