"""Which job a user means: ``results``, ``status``, ``map``, ``retry`` and ``export`` take a job
id, the start of one, or the job's name (as ``submit --name`` or the AOI gave it, shown by ``jobs``),
and any of these followed by ``@latest``.

:func:`resolve_job` is the one rule for all of them: an exact id wins; otherwise every job whose
id starts with the text (hex digits, any case) or whose name is exactly the text is a candidate.
One candidate is the job; none ends the command with exit status 2 and says where to look.
Several (``submit --rerun`` makes a second job of the same name) also end it with exit status 2,
listing the candidates newest first with what tells them apart (status, submission time, imagery,
model) and naming ``REF@latest``: that suffix takes the newest candidate, never silently, since
the job a command reads or retries should be the one the user chose.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable

from looking_glass.display import shown
from looking_glass.errors import EXIT_BAD_INPUT, LookingGlassError
from looking_glass.model.registry import model_label
from looking_glass.pipeline.store import ResultsStore

__all__ = ["LATEST", "MAX_LISTED", "JobRefError", "candidates", "resolve_job"]

HEX = re.compile(r"^[0-9a-fA-F]+$")
MAX_LISTED = 10  # candidates named in the "ambiguous" message
LATEST = "@latest"  # REF@latest: the newest job REF matches


class JobRefError(LookingGlassError, ValueError):
    """The text names no job, or more than one; the message says which and lists candidates."""

    exit_code = EXIT_BAD_INPUT


def candidates(jobs: list[dict], ref: str) -> list[dict]:
    """The jobs of ``jobs`` (as ``store.list_jobs`` returns them) that ``ref`` may mean: id
    starting with ``ref`` (when it is hex) or name equal to ``ref``; in the order given."""
    prefix = ref.lower() if HEX.match(ref) else None
    return [
        j for j in jobs
        if (prefix is not None and str(j["job_id"]).startswith(prefix)) or j.get("name") == ref
    ]


def _line(job: dict) -> str:
    """One candidate: id, status, submitted, imagery, model, name (what tells reruns apart)."""
    return (f"  {shown(job['job_id'])}  {shown(job.get('status', '?'))}  submitted {shown(job.get('created_at', '-'))}  "
            f"imagery {shown(job.get('imagery') or 'default', 64)}  "
            f"model {shown(model_label(str(job.get('model') or '')), 80)}  {shown(job.get('name', ''), 80)}")


def _did_you_mean(jobs: list[dict], ref: str) -> str:
    """``; did you mean 'NAME'?`` for the job names closest to a mistyped ``ref`` (difflib's
    ratio >= 0.75, at most three, as argparse suggests commands), else ""."""
    names = sorted({str(j["name"]) for j in jobs if j.get("name")})
    close = difflib.get_close_matches(ref, names, n=3, cutoff=0.75)
    return "; did you mean " + " or ".join(repr(shown(n)) for n in close) + "?" if close else ""


def resolve_job(store: ResultsStore, ref: str, note: Callable[[str], None] | None = None) -> str:
    """The id of the one job ``ref`` means in ``store`` (see the module docstring).

    Reads the job record for an exact id, else the jobs index (one query, never a scan; jobs
    written before the index existed are found by their full id only). ``REF@latest`` is the
    newest job (by submission time) that ``REF`` matches; where that is one of several, ``note``
    (if given) is called with a line saying which job was taken and what else matched. A job
    whose name itself ends in ``@latest`` is still found by that exact name. Raises
    :class:`JobRefError` (exit status 2) for an empty ``ref``, for no match, and for several
    matches without ``@latest`` (listing up to :data:`MAX_LISTED` of them: id, status,
    submitted, imagery, model, name, and the ``@latest`` reference that takes the newest).
    """
    ref = ref.strip()
    if not ref:
        raise JobRefError("give a job id, the start of one, or a job's name (see `looking-glass jobs`)")
    if HEX.match(ref) and store.get_job(ref.lower()) is not None:
        return ref.lower()
    jobs = store.list_jobs()  # newest first (the index's sort key is the submission time)
    found = candidates(jobs, ref)
    base = ref[:-len(LATEST)].strip() if ref.endswith(LATEST) else None
    if not found and base is not None:
        if not base:
            raise JobRefError(f"{shown(ref)!r}: give a job name or the start of an id before {LATEST}")
        found = candidates(jobs, base)
        if not found:
            raise JobRefError(f"no job with the name or an id starting with {shown(base)!r} in table {store.table}"
                              f"{_did_you_mean(jobs, base)} (see `looking-glass jobs`)")
        if len(found) > 1 and note is not None:
            others = ", ".join(str(j["job_id"])[:8] for j in found[1:4]) + (", ..." if len(found) > 4 else "")
            note(f"note: {shown(ref)!r} is job {found[0]['job_id']} (submitted {shown(found[0].get('created_at', '-'))}),"
                 f" the newest of {len(found)} matching {shown(base)!r}; the others: {others}")
        return str(found[0]["job_id"])
    if len(found) == 1:
        return str(found[0]["job_id"])
    if not found:
        raise JobRefError(f"no job with the name or an id starting with {shown(ref)!r} in table {store.table}"
                          f"{_did_you_mean(jobs, ref)} (see `looking-glass jobs`)")
    listed = "\n".join(_line(j) for j in found[:MAX_LISTED])
    more = f"\n  ... and {len(found) - MAX_LISTED} more" if len(found) > MAX_LISTED else ""
    raise JobRefError(f"{shown(ref)!r} matches {len(found)} jobs (newest first); give more of the job id, or "
                      f"{shown(ref + LATEST)!r} for the newest ({found[0]['job_id']}):\n{listed}{more}")
