"""The text of ``looking-glass status JOB``: one line per field, labels aligned, long values cut.

A worker error or a reason is up to 1,000 characters (``pipeline.jobs``), and the longest label
(``earlier_worker_error``) is longer than the others: printed as they are, they broke the
alignment and wrapped over many terminal lines. Values longer than :data:`STATUS_VALUE_CHARS` are
cut with an ellipsis, and one last line says that ``status JOB --json`` prints them whole.
"""

from __future__ import annotations

from looking_glass.display import shown
from looking_glass.pipeline.job_notes import no_imagery_note, retry_note

# The job's fields `status` prints, in this order (those it has and that are not empty).
STATUS_FIELDS = (
    "job_id", "name", "status", "reason", "worker_error", "earlier_worker_error", "earlier_reason", "worker_failures", "progress_pct",
    "tiles_total", "tiles_done", "tiles_failed", "tiles_no_imagery", "tiles_skipped", "tiles_pending", "building_area_m2",
    "created_at", "retried_at", "finished_at", "messages_total", "workers", "worker_job", "worker_jobs", "dlq_messages",
    "aoi_key", "imagery", "model", "model_uri", "deployment",
)
STATUS_VALUE_CHARS = 160  # characters of a value shown; the rest is in `status --json`
# A tile failure reason is the worker's sentence ending in what to do (e.g. "... submit the AOI
# again for a job on the new definition", ~230 characters), or a remote error's text: longer.
REASON_CHARS = 400
_LABEL = max(len(label) for label in (*STATUS_FIELDS, "tile failures"))


def status_lines(info: dict, job_ref: str) -> list[str]:
    """The lines ``status`` prints for ``info`` (``pipeline.jobs.status`` made plain: JSON values)
    asked for as ``job_ref`` (what the user typed, named in the note on cut values): the fields of
    :data:`STATUS_FIELDS` (``model`` as ``jobs`` names it, ``ID/VERSION`` or ``default``
    (:func:`~looking_glass.model.registry.model_label`), then ``model_uri``, the URI it stands
    for, when that says more), warnings, the last retry reason, the no-imagery note and the tile
    failure reasons counted, each value escaped (``display.shown``); the job's values (not the
    notes) cut to :data:`STATUS_VALUE_CHARS` characters, a tile failure reason to
    :data:`REASON_CHARS`."""
    info = dict(info)
    if info.get("imagery") or info.get("imagery_source"):  # a GeoTIFF's file name, not `default`
        from looking_glass.runtime.imagery_sources import job_imagery_label

        info["imagery"] = job_imagery_label(info)
    if "model" in info:  # ID/VERSION as `jobs` names it; the URI it stands for on the next line
        from looking_glass.model.registry import SHIPPED_MODEL_PREFIX, model_label
        from looking_glass.pipeline.job_model import job_models_label

        uri = str(info["model"] or "")
        info["model"] = job_models_label(info)  # several after a retry under another model
        info["model_uri"] = uri if uri != model_label(uri) and not uri.startswith(SHIPPED_MODEL_PREFIX) else None
    if len(info.get("worker_jobs") or ()) > 1:  # retried on a stack: every Batch job, the first first
        info["worker_jobs"] = ", ".join(str(j) for j in info["worker_jobs"])
    else:
        info.pop("worker_jobs", None)  # the one Batch job is worker_job
    # (label, text, characters shown): the job's values are cut; the notes are the project's own
    # sentences (the reason in the retry note already cut to 300 characters), whole (None), or
    # what to do next is lost.
    cut = STATUS_VALUE_CHARS
    rows = [(k, shown(info[k]), cut) for k in STATUS_FIELDS if info.get(k) not in (None, "")]
    rows += [("warning", shown(w), cut) for w in info.get("warnings") or []]
    note = retry_note(info, int(info.get("dlq_messages") or 0))
    if note:  # why the job is not moving: the worker's last transient failure
        rows.append(("retrying", note.removeprefix("retrying: "), None))
    note = no_imagery_note(info)
    if note:
        rows.append(("note", note, None))
    rows += [("tile failures", f"{count:>6} x {shown(reason)}", 9 + REASON_CHARS)
             for reason, count in (info.get("tile_failure_reasons") or {}).items()]
    lines = [f"{label:{_LABEL}} {text if chars is None else shown(text, chars)}" for label, text, chars in rows]
    if any(chars is not None and len(text) > chars for _, text, chars in rows):
        lines.append(f"(values longer than {STATUS_VALUE_CHARS} characters are cut; "
                     f"`looking-glass status {shown(job_ref)} --json` prints them whole)")
    return lines
