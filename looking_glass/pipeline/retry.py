"""``looking-glass retry``: enqueue again every tile of a job without a final ``done``, move the
job's dead-letter messages back, and start workers for that work.

Works the same against a deployed stack and the embedded run (:mod:`looking_glass.pipeline.jobs`).
"""

from __future__ import annotations

import numpy as np
from botocore.exceptions import BotoCoreError, ClientError

from looking_glass.errors import EXIT_BAD_INPUT
from looking_glass.grid import ZOOM, quadkey
from looking_glass.imagery.status import TILE_DONE, TILE_STATUSES
from looking_glass.pipeline.enumerator import SQS_BATCH
from looking_glass.pipeline.jobs import (
    JobDeployment,
    JobError,
    dead_letters,
    get_job,
    queue_depth,
    record_new_workers,
    release,
    store_for,
)
from looking_glass.pipeline.store import ENQUEUEING, FAILED
from looking_glass.pipeline.workunits import pack_runs
from looking_glass.runtime.defaults import DEFAULT_TILES_PER_MESSAGE, DEFAULT_TILES_PER_WORKER, workers_for
from looking_glass.runtime.resources import OUTPUT_JOB_DEFINITION, OUTPUT_JOB_QUEUE
from looking_glass.tiling.aoi import parse_aoi
from looking_glass.tiling.cover import iter_tiles, tile_runs

RETRYABLE = tuple(s for s in TILE_STATUSES if s != TILE_DONE)


def _aoi_cover(dep: JobDeployment, job: dict):
    """Zoom-18 tiles of the job's AOI, re-read from the trigger bucket (None if unreadable)."""
    kwargs = {"Bucket": job.get("aoi_bucket"), "Key": job.get("aoi_key")}
    if not kwargs["Bucket"] or not kwargs["Key"]:
        return None
    if job.get("aoi_version"):
        kwargs["VersionId"] = job["aoi_version"]
    try:
        data = dep.client("s3").get_object(**kwargs)["Body"].read()
        return iter_tiles(tile_runs(parse_aoi(data).geometry, ZOOM), ZOOM)
    except Exception:  # noqa: BLE001 - without the AOI only stored tiles can be retried
        return None


def runs_of(tiles: list[tuple[int, int]]) -> np.ndarray:
    """(x, y) tiles to [y, x_start, x_stop) row runs, the work-unit format."""
    runs: list[list[int]] = []
    for x, y in sorted(tiles, key=lambda t: (t[1], t[0])):
        if runs and runs[-1][0] == y and runs[-1][2] == x:
            runs[-1][2] = x + 1
        else:
            runs.append([y, x, x + 1])
    return np.array(runs, dtype=np.int64).reshape(-1, 3)


def retry(dep: JobDeployment, job_id: str, statuses: tuple[str, ...] = RETRYABLE, force: bool = False) -> dict:
    """Enqueue again every tile of the job without a final ``done`` (tiles with one of
    ``statuses``, and tiles with no result at all), and move the job's dead-letter messages
    back to the tile queue; the job goes back to RUNNING (a FAILED one too: its reason kept as
    ``earlier_reason``, so it ends COMPLETE once its tiles are final; the work still queued does
    not stop the retry of a FAILED job, whose workers are gone). Done tiles are never redone. Work
    units hold the deployment's ``tiles_per_message`` tiles, as the enumerator recorded it on
    the job (the default for jobs enumerated before it did). On a stack it submits workers
    (:func:`launch_workers`); raises :class:`WorkersNotStarted` when it queued work but could
    not, after which the work stays queued."""
    bad = [s for s in statuses if s not in RETRYABLE]
    if bad or not statuses:
        raise JobError(f"--statuses must be some of {', '.join(RETRYABLE)} (got {', '.join(statuses) or 'none'})",
                       exit_code=EXIT_BAD_INPUT)
    store = store_for(dep)
    job = get_job(store, job_id)
    if job["status"] == FAILED and not job.get("tiles_total"):
        raise JobError(f"job {job_id} failed before it had tiles ({job.get('reason')}): fix the AOI and submit it again")
    if job["status"] == FAILED and "messages_total" not in job:
        # Refused by the enumerator (e.g. more tiles than LG_MAX_TILES_PER_JOB): re-reading the
        # AOI here would enqueue what it refused, for a job that stays FAILED.
        raise JobError(f"job {job_id} was refused before its tiles were enqueued ({job.get('reason')}): fix the AOI "
                       "and submit it again")
    if job["status"] in (ENQUEUEING,):
        raise JobError(f"job {job_id} is still being enqueued; retry once it is RUNNING")
    sqs = dep.client("sqs")
    depth = queue_depth(sqs, dep.resources.tile_queue_url)
    # A FAILED job has no workers on it (its workers failed: what the retry is for), so the work
    # still queued cannot be theirs in progress; it is redone at worst, never counted twice.
    if depth and not force and job["status"] != FAILED:
        raise JobError(
            f"the tile queue still holds {depth} work units (workers may be on this job): wait until "
            "it is empty, or pass --force to enqueue anyway"
        )

    # x, y, z and unit: forget_tiles takes each tile out of its unit's ledger too
    items = list(store.query_tiles(job_id, attributes=("quadkey", "x", "y", "z", "status", "building_area_m2", "unit")))
    have = {it["quadkey"] for it in items}
    redo = [it for it in items if it["status"] in statuses]
    cover = _aoi_cover(dep, job)
    missing: list[tuple[int, int]] = []
    if cover is not None:
        missing = [(x, y) for x, y, z in cover if quadkey(x, y, z) not in have]

    held = dead_letters(sqs, dep.resources.tile_dlq_url, job_id, hold_s=300)
    in_dlq: set[tuple[int, int]] = set()
    from looking_glass.pipeline.workunits import MalformedMessage, parse_work_unit

    movable = []
    for m in held:
        try:
            unit = parse_work_unit(m["Body"])
        except MalformedMessage:
            continue  # stays in the DLQ: no retry can fix it
        movable.append(m)
        in_dlq.update((x, y) for x, y, _ in unit.tiles())
    release(sqs, dep.resources.tile_dlq_url, [m for m in held if m not in movable])

    forgotten = store.forget_tiles(job_id, redo)
    from looking_glass.grid import tile_from_quadkey

    todo = {tile_from_quadkey(it["quadkey"])[:2] for it in redo} | set(missing)
    todo -= in_dlq
    if forgotten or missing or movable or job["status"] == FAILED:
        # A FAILED job whose tiles all became final after it failed (workers started for the
        # queue once another model was made active) has nothing to redo: it completes below.
        store.reopen_job(job_id, str(job.get("reason") or "") if job["status"] == FAILED else "")

    for i in range(0, len(movable), SQS_BATCH):
        chunk = movable[i : i + SQS_BATCH]
        sqs.send_message_batch(
            QueueUrl=dep.resources.tile_queue_url,
            Entries=[{"Id": str(k), "MessageBody": m["Body"]} for k, m in enumerate(chunk)],
        )
        sqs.delete_message_batch(
            QueueUrl=dep.resources.tile_dlq_url,
            Entries=[{"Id": str(k), "ReceiptHandle": m["ReceiptHandle"]} for k, m in enumerate(chunk)],
        )
    # The job's own source and its definition's digest, as its first units had: after the source
    # was redefined, workers fail these tiles again rather than read other imagery for this job.
    imagery, digest = job.get("imagery") or None, job.get("imagery_digest") or None
    per_unit = int(job.get("tiles_per_message") or DEFAULT_TILES_PER_MESSAGE)
    units = [u.to_json() for u in pack_runs(job_id, ZOOM, runs_of(sorted(todo)), per_unit, imagery, digest)] if todo else []
    for i in range(0, len(units), SQS_BATCH):
        resp = sqs.send_message_batch(
            QueueUrl=dep.resources.tile_queue_url,
            Entries=[{"Id": str(k), "MessageBody": b} for k, b in enumerate(units[i : i + SQS_BATCH])],
        )
        if resp.get("Failed"):
            raise JobError(f"SQS refused {len(resp['Failed'])} work units: {resp['Failed'][0]}")
    tiles_queued = len(todo) + len(in_dlq)
    out = {
        "job_id": job_id,
        "tiles_reset": forgotten,
        "tiles_missing": len(missing),
        "aoi_read": cover is not None,
        "dlq_messages_moved": len(movable),
        "work_units_enqueued": len(units),
        "tiles_enqueued": len(todo),
        "workers": None if tiles_queued else "nothing to retry",
    }
    if not tiles_queued and job["status"] == FAILED and store.all_final(job_id) and store.try_complete(job_id):
        out["workers"] = "nothing to retry: every tile is final, the job is COMPLETE"
    if tiles_queued:
        from looking_glass.pipeline.job_model import record_retry_model

        job = {**job, **record_retry_model(store, dep, job)}  # what the new workers load
        try:
            out["workers"] = launch_workers(dep, job, tiles_queued)
        except WorkersNotStarted as exc:
            raise WorkersNotStarted(
                f"job {job_id}: {tiles_queued:,} tiles are queued again in {len(units) + len(movable):,} work units, "
                f"but no workers were started: {exc} (`retry` again would refuse while they are queued, and with "
                "--force queue them twice)", summary=out) from None
    return out


class WorkersNotStarted(JobError):
    """``retry`` queued work again on a stack but started no workers for it. The message says that
    the work is queued, why no workers started and the command that starts them; ``summary`` is
    what retry did (its usual return value, ``workers`` None)."""

    def __init__(self, message: str, summary: dict | None = None) -> None:
        super().__init__(message)
        self.summary = summary or {}


# The stand-ins of the aws command retry prints when the stack's job queue and definition are not known.
UNKNOWN_QUEUE, UNKNOWN_DEFINITION = "JOB_QUEUE_ARN", "JOB_DEFINITION_ARN"


def worker_target(dep: JobDeployment, job: dict) -> tuple[str, str]:
    """(job queue, job definition) for the job's relaunched Batch workers: the stack's
    ``JobQueueArn`` and ``JobDefinitionArn`` outputs (``dep.outputs``: the definition's current
    revision, the one the operator policy allows; a redeploy makes older ones inactive). Only
    where those are not known (a deployment object without ``outputs``: a caller of :func:`retry`
    other than ``--stack``, or stacks that lack the outputs, which every version of stacks/ has
    declared) the queue and definition of the job's latest Batch job (``worker_job``), asked of
    Batch. Raises :class:`WorkersNotStarted` (no summary) when neither is known."""
    outputs = getattr(dep, "outputs", None) or {}
    queue, definition = outputs.get(OUTPUT_JOB_QUEUE), outputs.get(OUTPUT_JOB_DEFINITION)
    if queue and definition:
        return queue, definition
    previous = str(job.get("worker_job") or "")
    why = (f"{dep.describe()} does not name its job queue and job definition (outputs {OUTPUT_JOB_QUEUE} and "
           f"{OUTPUT_JOB_DEFINITION})")
    try:
        found = dep.client("batch").describe_jobs(jobs=[previous])["jobs"] if previous else []
    except (ClientError, BotoCoreError) as exc:
        raise WorkersNotStarted(f"{why} and Batch could not be asked about the job's latest Batch job {previous} "
                                f"({_aws_reason(exc)})") from None
    if not found:
        raise WorkersNotStarted(f"{why} and Batch no longer knows the job's latest Batch job "
                                f"{previous or '(none recorded)'} to take them from")
    return found[0]["jobQueue"], found[0]["jobDefinition"]


def _aws_reason(exc: Exception) -> str:
    """A botocore error in words: ``Code: message`` for a refusal, the error itself otherwise."""
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        return f"{err.get('Code')}: {err.get('Message')}"
    return str(exc)


def launch_workers(dep: JobDeployment, job: dict, tiles: int) -> str:
    """Workers for ``tiles`` re-enqueued tiles: on AWS one Batch job on the stack's job queue and
    definition (:func:`worker_target`), one worker per the deployment's ``tiles_per_worker`` as
    the enumerator recorded it on the job (the default for jobs enumerated before it did), at most
    the job's first count, recorded on the job as its current workers (:func:`record_new_workers`);
    the embedded run (``looking-glass up``) starts local workers by itself when work is queued (the
    failure of its earlier workers, if any, moves to ``earlier_worker_error`` all the same). Raises :class:`WorkersNotStarted` (no summary; its message says why and
    gives the ``aws batch submit-job`` command that starts them) when Batch cannot be used."""
    previous = str(job.get("worker_job") or "")
    if dep.kind == "embedded" or previous.startswith("local-"):
        record_new_workers(store_for(dep), None, job, None)  # the old workers' failure is history now
        return "the embedded run starts local workers for queued work"
    from looking_glass.pipeline.launchers import BatchLauncher

    per_worker = int(job.get("tiles_per_worker") or DEFAULT_TILES_PER_WORKER)
    workers = workers_for(tiles, per_worker, int(job.get("workers") or 1))
    batch = dep.client("batch")
    try:
        queue, definition = worker_target(dep, job)
    except WorkersNotStarted as exc:
        command = BatchLauncher(batch, UNKNOWN_QUEUE, UNKNOWN_DEFINITION).aws_command(job["job_id"], workers)
        raise WorkersNotStarted(f"{exc}; start them with `{command}`, {UNKNOWN_QUEUE} and {UNKNOWN_DEFINITION} "
                                f"being the stack's {OUTPUT_JOB_QUEUE} and {OUTPUT_JOB_DEFINITION} outputs") from None
    launcher = BatchLauncher(batch, queue, definition)
    try:
        launched = launcher.launch(job["job_id"], workers)
    except (ClientError, BotoCoreError) as exc:
        raise WorkersNotStarted(f"the submission to Batch failed ({_aws_reason(exc)}); once that is fixed, start "
                                f"them with `{launcher.aws_command(job['job_id'], workers)}`") from None
    record_new_workers(store_for(dep), batch, job, launched)  # status and jobs now follow these workers
    return f"Batch job {launched} ({workers} worker(s))"
