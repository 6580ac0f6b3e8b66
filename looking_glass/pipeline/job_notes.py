"""One-line notes that say why a job looks the way it does, for ``status`` and ``submit --wait``.

A job whose work units keep failing transiently (a tile server that does not answer, a refused
token) stays RUNNING while SQS redelivers its units and then moves them to the dead-letter
queue; the reason used to be in the worker's log only. The worker records the last one on the
job record (``retry_reason``, ``retry_at``: :meth:`looking_glass.pipeline.store.ResultsStore.note_retry`)
and :func:`retry_note` words it. A job that ends COMPLETE with no tile done because no tile had
imagery (an AOI outside the source's coverage, often [lat, lon] read as [lon, lat] against a URL
template, whose extent is unknown) gets :func:`no_imagery_note`.
"""

from __future__ import annotations

import re

from looking_glass.display import shown
from looking_glass.pipeline.store import COMPLETE, ENQUEUEING, RUNNING

__all__ = ["no_imagery_note", "retry_kind", "retry_note"]

# Where the user reads what happens to units that keep failing, and how `retry` finishes the job.
RETRY_DOCS = "docs/results.md#tile-outcomes"
_TILE_PREFIX = re.compile(r"^tile \d+/\d+/\d+: ")


def retry_kind(job: dict) -> str | None:
    """The job's last transient failure without the tile it hit (``ConnectionError after 4
    attempts``), so a follower can say it once per kind rather than once per unit; None when
    the job is final or none was recorded."""
    if job.get("status") not in (RUNNING, ENQUEUEING) or not job.get("retry_reason"):
        return None
    return _TILE_PREFIX.sub("", str(job["retry_reason"]))


def retry_note(job: dict, dlq_messages: int | None = None) -> str | None:
    """``retrying: REASON (last at TIME); ...`` for a RUNNING or ENQUEUEING job whose worker kept
    a unit for redelivery, with what happens next: ``dlq_messages`` (when the caller counted
    them) work units already in the dead-letter queue and the ``retry`` command that moves them
    back. None when there is nothing to say (a final job's old reason is not shown)."""
    if retry_kind(job) is None:
        return None
    reason, when = shown(job["retry_reason"], 300), shown(job.get("retry_at") or "?")
    job_id = str(job.get("job_id", "JOB"))[:8]
    if dlq_messages:
        unit = "unit" if dlq_messages == 1 else "units"
        then = (f"{dlq_messages} work {unit} in the dead-letter queue: once the source answers, "
                f"`looking-glass retry {job_id}` moves them back")
    else:
        then = (f"units are redelivered a few times, then go to the dead-letter queue "
                f"(`looking-glass retry {job_id}` once the source answers)")
    return f"retrying: {reason} (last at {when}); {then}; see {RETRY_DOCS}"


def no_imagery_note(job: dict) -> str | None:
    """The hint for a COMPLETE job none of whose tiles had imagery (every tile ``no_imagery``):
    exit 0 and a table of zeros said nothing; None for any other job."""
    total = int(job.get("tiles_total", 0) or 0)
    if (job.get("status") != COMPLETE or total == 0 or int(job.get("tiles_done", 0) or 0) != 0
            or int(job.get("tiles_no_imagery", 0) or 0) != total):
        return None
    return "no tile had imagery: is the AOI inside the source's coverage? (GeoJSON wants [lon, lat])"
