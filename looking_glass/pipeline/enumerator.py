"""The tile enumerator: one uploaded AOI becomes a job record, work units on SQS, and workers.

Pure logic behind the Lambda handler (``lambdas/tile_enumerator``). Idempotent: the job id comes
from the AOI object's bucket, key and content (:func:`job_id_for_aoi`), so a duplicate S3 event
finds its job and enqueues nothing twice; an invocation that died half-way (job still ENQUEUEING)
is finished by the redelivery, and any message sent twice is harmless because tile results are
written once per tile.

Job identity: the uploaded content includes the job's inputs (the ``"looking_glass"`` member
``submit`` writes: the registered imagery source's name and the active model, see
:func:`looking_glass.tiling.aoi.job_inputs`), and the id also covers the digest of that source's
*definition* (:attr:`looking_glass.runtime.imagery_sources.ImagerySource.digest`: template or
files, capture date, bands), so a job is the same job only for the same AOI, imagery source and
model: a name registered again for other imagery makes a new job. ``submit`` computes the id
before uploading (it reads the same registry: the stack output ``ImagerySources``, the embedded
run's state file) and says which job already holds the results of the very same inputs
(``--rerun`` adds a timestamp: a new job).
"""

from __future__ import annotations

import hashlib
import logging
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from urllib.parse import unquote_plus

from botocore.config import Config
from botocore.exceptions import ClientError

from looking_glass.grid import ZOOM
from looking_glass.pipeline.store import COMPLETE, ENQUEUEING, FAILED, RUNNING, ResultsStore, job_id_for
from looking_glass.pipeline.workunits import pack_runs
from looking_glass.runtime.resources import TRIGGER_PREFIX, DeployedResources
from looking_glass.runtime.settings import EnumeratorSettings
from looking_glass.tiling.aoi import MAX_NAME_CHARS, AoiError, cap_list, parse_aoi
from looking_glass.tiling.cover import count_tiles
from looking_glass.tiling.plan import TileCapError, cover_within_limits

log = logging.getLogger(__name__)

# The largest AOI file read (about a million vertices of GeoJSON, the vertex cap of tiling.aoi):
# reading it as JSON stays near 300 MB of the Lambda's 1024 MB.
MAX_AOI_BYTES = 20 * 1024 * 1024
SQS_BATCH = 10


@dataclass(frozen=True)
class AoiObject:
    """An uploaded AOI object: where it is, its version and ETag (its content names its job:
    :func:`job_id_for_aoi`; the ETag only when it cannot be read)."""

    bucket: str
    key: str
    version: str | None
    etag: str


def _chunks(items, size: int):
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def objects_from_s3_event(event: dict) -> list[AoiObject]:
    """The objects named by an S3 event notification (keys arrive URL-encoded)."""
    out = []
    for record in event.get("Records", []):
        s3 = record.get("s3", {})
        bucket = s3.get("bucket", {}).get("name")
        obj = s3.get("object", {})
        if not bucket or "key" not in obj:
            log.warning("ignoring S3 event record without bucket or key: %s", record)
            continue
        version = obj.get("versionId") or None
        etag = obj.get("eTag") or version or "unknown"
        out.append(AoiObject(bucket, unquote_plus(obj["key"]), version, etag))
    return out


def job_id_for_aoi(bucket: str, key: str, data: bytes, imagery_digest: str = "") -> str:
    """The id of the job of AOI ``data`` uploaded to ``bucket``/``key`` on the imagery source
    whose definition has ``imagery_digest`` (``ImageryRegistry.digest``): the same bytes (shape,
    imagery name and model members) under the same key on the same definition are the same
    job; any change is a new one. A SHA-256 of the content, not the ETag (which is no content
    hash with SSE-KMS), so ``submit`` can compute it before uploading. Without a digest (the
    definition not known: a deployment from before digests) the id is the content's alone, as
    it always was."""
    content = "sha256:" + hashlib.sha256(data).hexdigest()
    return job_id_for(bucket, key, f"{content}|imagery:{imagery_digest}" if imagery_digest else content)


def upload_aoi(s3, bucket: str, filename: str, data: bytes, imagery_digest: str = "") -> str:
    """Upload AOI bytes (GeoJSON) as ``<TRIGGER_PREFIX><filename>`` to the trigger ``bucket``
    with the boto3 S3 client ``s3``; returns the id of the job the upload starts
    (:func:`job_id_for_aoi`; ``imagery_digest``: the digest of the source it names)."""
    key = f"{TRIGGER_PREFIX}{filename}"
    s3.put_object(Bucket=bucket, Key=key, Body=data, ContentType="application/geo+json")
    return job_id_for_aoi(bucket, key, data, imagery_digest)


def _finished(job_id: str, job: dict | None) -> bool:
    """Whether ``job`` (its record, None: none yet) is past enqueueing: a duplicate event, nothing
    to do (ENQUEUEING: a delivery that died half-way, which this one finishes)."""
    if job and job["status"] in (RUNNING, COMPLETE, FAILED):
        log.info("job %s already %s: duplicate event ignored", job_id, job["status"])
        return True
    return False


class _Replaced(Exception):
    """The object under the key is no longer the one the event announced (ETag differs)."""


class Enumerator:
    """Turns an uploaded AOI into a job: record, work units on the tile queue, workers."""

    def __init__(self, session, resources: DeployedResources, settings: EnumeratorSettings, launcher):
        self.s3 = session.client("s3")
        self.sqs = session.client(
            "sqs", config=Config(max_pool_connections=settings.enqueue_threads + 2, retries={"mode": "adaptive"})
        )
        self.store = ResultsStore(session.client("dynamodb"), resources.results_table)
        self.resources = resources
        self.settings = settings
        self.launcher = launcher

    def process(self, obj: AoiObject) -> dict:
        """Turn one AOI object into a job; returns the job record. Never raises for bad input."""
        source = {"aoi_bucket": obj.bucket, "aoi_key": obj.key, "aoi_version": obj.version or ""}
        default_name = obj.key.rsplit("/", 1)[-1].removesuffix(".geojson")
        try:
            data = self._read(obj)
        except AoiError as exc:  # the content is unknown: the upload's ETag names the job
            job_id = job_id_for(obj.bucket, obj.key, obj.etag)
            job = self.store.get_job(job_id)
            return job if _finished(job_id, job) else self._reject(job_id, job, str(exc), {**source, "name": default_name})
        try:
            aoi = parse_aoi(data, default_name=default_name)
        except AoiError as exc:  # its imagery is unknown too: the content alone names the job
            job_id = job_id_for_aoi(obj.bucket, obj.key, data)
            job = self.store.get_job(job_id)
            return job if _finished(job_id, job) else self._reject(job_id, job, str(exc), {**source, "name": default_name})
        registry = self.settings.imagery
        imagery = registry.resolve(aoi.imagery)
        digest = registry.digest(imagery)
        job_id = job_id_for_aoi(obj.bucket, obj.key, data, digest)
        job = self.store.get_job(job_id)
        if _finished(job_id, job):
            return job

        attrs = {**source, "name": aoi.name, "warnings": aoi.warnings, "zoom": ZOOM, "imagery": imagery, "model": aoi.model}
        if digest:  # what the name meant when the job ran (the map reads its bands from here)
            attrs.update(imagery_digest=digest, imagery_source=registry.sources[imagery].to_json())
        unknown = registry.unknown(imagery)  # only registered sources, never a URL
        if unknown:
            return self._reject(job_id, job, unknown, attrs)
        try:
            runs = cover_within_limits(aoi.geometry, ZOOM, self.settings.max_tiles_per_job)
        except TileCapError as exc:
            return self._reject(job_id, job, str(exc), {**attrs, "tiles_total": exc.tiles})
        except AoiError as exc:
            return self._reject(job_id, job, str(exc), attrs)
        total = count_tiles(runs)

        if job is None:
            attrs.update(status=ENQUEUEING, tiles_total=total)
            if not self.store.create_job(job_id, attrs):
                return self.store.get_job(job_id)  # a concurrent duplicate got there first

        messages = self.enqueue(job_id, runs, aoi.imagery, digest)  # workers check the digest
        workers = self.settings.workers_for(total)
        worker_job = self.launcher.launch(job_id, workers)
        # The deployment's sizing, so that `retry` cuts units and sizes workers the same way
        self.store.update_job(
            job_id,
            {"status": RUNNING, "messages_total": messages, "workers": workers, "worker_job": worker_job,
             "tiles_per_message": self.settings.tiles_per_message, "tiles_per_worker": self.settings.tiles_per_worker},
            only_if_status=(ENQUEUEING,),
        )
        log.info("job %s: %d tiles in %d messages, %d workers", job_id, total, messages, workers)
        return self.store.get_job(job_id)

    def _read(self, obj: AoiObject) -> bytes:
        """The bytes of the object the event announced: its version when the event names one,
        else only while its ETag is still the event's (``IfMatch``), else (replaced since) the
        version of a versioned bucket that has the event's ETag: an AOI uploaded again under the
        same key is the next job's, never read by this one."""
        try:
            return self._read_pinned(obj)
        except _Replaced:
            version = self._version_with_etag(obj)
            if version is None:
                raise AoiError(
                    f"AOI object s3://{obj.bucket}/{obj.key} was replaced after this upload "
                    "(its ETag changed); the new upload is its own job"
                ) from None
            return self._read_pinned(AoiObject(obj.bucket, obj.key, version, obj.etag))

    def _version_with_etag(self, obj: AoiObject) -> str | None:
        """The id of the version of ``obj.key`` whose ETag is the event's, if the bucket keeps
        versions (S3 events on versioned buckets normally name it; some emulators do not)."""
        want = obj.etag.strip('"')
        try:
            pages = self.s3.get_paginator("list_object_versions").paginate(Bucket=obj.bucket, Prefix=obj.key)
            for page in pages:
                for v in page.get("Versions", []):
                    if v.get("Key") == obj.key and v.get("ETag", "").strip('"') == want and v.get("VersionId") not in (None, "null"):
                        return v["VersionId"]
        except ClientError:
            return None
        return None

    def _read_pinned(self, obj: AoiObject) -> bytes:
        kwargs = {"Bucket": obj.bucket, "Key": obj.key}
        if obj.version:
            kwargs["VersionId"] = obj.version
        elif obj.etag and obj.etag != "unknown":
            kwargs["IfMatch"] = obj.etag if obj.etag.startswith('"') else f'"{obj.etag}"'
        try:
            head = self.s3.head_object(**kwargs)
            if head["ContentLength"] > MAX_AOI_BYTES:
                raise AoiError(
                    f"AOI file is {head['ContentLength']} bytes, above the {MAX_AOI_BYTES} byte limit"
                )
            body = self.s3.get_object(**kwargs)["Body"]
            data = body.read(MAX_AOI_BYTES + 1)  # the object cannot have grown, but never more
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("412", "PreconditionFailed"):
                raise _Replaced() from None
            if code in ("404", "NoSuchKey", "NoSuchVersion", "403", "AccessDenied"):
                raise AoiError(f"AOI object s3://{obj.bucket}/{obj.key} cannot be read ({code})") from None
            raise  # throttling and the like: let Lambda retry
        if len(data) > MAX_AOI_BYTES:
            raise AoiError(f"AOI file is above the {MAX_AOI_BYTES} byte limit")
        return data

    def _reject(self, job_id: str, job: dict | None, reason: str, attrs: dict) -> dict:
        # Everything user-given is bounded, so the record always fits in one DynamoDB item.
        reason = reason if len(reason) <= 1000 else reason[:999] + "\u2026"
        attrs = {**attrs, "name": str(attrs.get("name", ""))[:MAX_NAME_CHARS]}
        if "warnings" in attrs:
            attrs["warnings"] = cap_list(list(attrs["warnings"]))
        log.warning("job %s rejected: %r", job_id, reason)
        if job is None:
            self.store.create_job(job_id, {**attrs, "status": FAILED, "reason": reason})
        else:
            self.store.fail_job(job_id, reason)
        return self.store.get_job(job_id)

    def enqueue(self, job_id: str, runs, imagery: str | None = None, imagery_digest: str = "") -> int:
        """Send every work unit, 10 per request, from a bounded pool of threads; each names the
        ``imagery`` source and the ``imagery_digest`` of its definition (workers refuse to read
        a source defined otherwise: :mod:`looking_glass.pipeline.workunits`).

        Units are generated lazily and at most a few thousand requests are in flight, so memory
        stays flat however large the AOI; a country-scale job is tens of thousands of requests.
        """
        units = pack_runs(job_id, ZOOM, runs, self.settings.tiles_per_message, imagery, imagery_digest)
        batches = _chunks((u.to_json() for u in units), SQS_BATCH)
        sent = 0
        with ThreadPoolExecutor(self.settings.enqueue_threads, thread_name_prefix="enqueue") as pool:
            pending = set()
            for batch in batches:
                pending.add(pool.submit(self._send_batch, batch))
                if len(pending) >= 4 * self.settings.enqueue_threads:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    sent += sum(f.result() for f in done)
            sent += sum(f.result() for f in pending)
        return sent

    def _send_batch(self, bodies: list[str]) -> int:
        entries = [{"Id": str(i), "MessageBody": b} for i, b in enumerate(bodies)]
        for attempt in range(5):
            resp = self.sqs.send_message_batch(QueueUrl=self.resources.tile_queue_url, Entries=entries)
            failed = {f["Id"] for f in resp.get("Failed", [])}
            if not failed:
                return len(bodies)
            entries = [e for e in entries if e["Id"] in failed]
            time.sleep(0.1 * 2**attempt)
        raise RuntimeError(f"SQS refused {len(entries)} work units after 5 attempts")
