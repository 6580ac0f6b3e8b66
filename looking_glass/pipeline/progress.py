"""The progress bar of a job being followed (``submit --wait`` and the demo).

The bar counts tiles with a final result, and its text names the same tiles by outcome (done,
failed, and no imagery / skipped when there are any), so the figures beside the bar always add
up to its count. Before the first tile is final it says what is happening instead of sitting at
0: the enumerator still enqueueing, or workers starting (a worker loads TensorFlow and the model
before its first tile, tens of seconds on a small machine); the bar is redrawn on every poll, so
its clock keeps running. The results store counts a work unit's tiles in one transaction (issue
14), so the count moves a unit (64 tiles by default) at a time; the rate and the time left are
the average since the start (tqdm's ``smoothing=0``), not the speed of the last jump.

:class:`CountBar` is the bar of the commands that read a job's tiles (``export``, ``results
--compare``, ``map --compare``): it is drawn once its total is known, so it never shows a count
of an unknown total ("0tile").
"""

from __future__ import annotations

import time

from looking_glass.imagery.status import TILE_STATUSES
from looking_glass.pipeline.store import COMPLETE, ENQUEUEING, FAILED

__all__ = ["CountBar", "JobProgress", "outcome_counts", "progress_text"]


def outcome_counts(job: dict) -> dict[str, int]:
    """Tiles of ``job`` (its record) with each final outcome, in :data:`TILE_STATUSES` order,
    named as people read them (``no imagery``); they add up to its ``tiles_final``."""
    return {status.replace("_", " "): int(job.get(f"tiles_{status}", 0)) for status in TILE_STATUSES}


def progress_text(job: dict, workers: int | None = None) -> str:
    """What the bar says beside its count: the outcomes (done and failed always, the others when
    there are any), or, while no tile is final yet, what the job is waiting for. ``workers``:
    how many worker processes are running, when the caller knows (the demo does)."""
    counts = outcome_counts(job)
    if sum(counts.values()) == 0:
        if job.get("status") == ENQUEUEING:
            return "enqueueing work units"
        if job.get("retry_reason"):  # a worker ran and kept a unit: not "starting" (the reason: job_notes)
            return "retrying work units (imagery failing)"
        if workers == 0:
            return "waiting for a worker to start"
        started = f"{workers} worker{'s' if workers != 1 else ''}" if workers else "workers"
        return f"{started} starting (loading the model)"
    return ", ".join(f"{name} {n:,}" for name, n in counts.items() if n or name in ("done", "failed"))


class JobProgress:
    """A tqdm bar of one job's final tiles (created once the job knows its tile count), or
    nothing when ``enabled`` is false. ``file``: where tqdm writes (standard error by default)."""

    def __init__(self, desc: str, enabled: bool = True, file=None, mininterval: float = 0.5) -> None:
        self.desc, self.enabled, self.file, self.mininterval = desc, enabled, file, mininterval
        self.bar = None
        self.shown_at = 0.0  # time.monotonic() of the last draw asked for (not a log line per poll)

    def update(self, job: dict | None, workers: int | None = None) -> None:
        """Show ``job`` (its record; None or without ``tiles_total`` yet: nothing to show)."""
        if not self.enabled or not job or not job.get("tiles_total"):
            return
        if self.bar is None and job.get("status") in (COMPLETE, FAILED):
            # Final when first seen (a resubmit of inputs a job already holds): a bar would jump
            # 0 -> all in no time and show a rate of ~10^5 tile/s; the caller prints the status.
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=int(job["tiles_total"]), unit="tile", desc=self.desc, file=self.file,
                            mininterval=self.mininterval, smoothing=0)
        self.bar.set_postfix_str(progress_text(job, workers), refresh=False)
        moved, now = int(job.get("tiles_final", 0)) - self.bar.n, time.monotonic()
        if moved:
            self.bar.update(moved)  # redrawn by tqdm, at most every ``mininterval`` s
            self.shown_at = now
        elif now - self.shown_at >= self.mininterval:
            self.bar.refresh()  # nothing moved: the elapsed time and the text stay current
            self.shown_at = now

    def write(self, line: str) -> None:
        """Print ``line`` above the bar (or on standard error when there is no bar: a note is
        shown with --no-progress too)."""
        import sys

        if self.bar is not None:
            self.bar.write(line, file=self.file or sys.stderr)
        else:
            print(line, file=self.file or sys.stderr, flush=True)

    def close(self) -> None:
        """Close the bar (leaving its last line on screen)."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class CountBar:
    """A tqdm bar of ``unit`` items (e.g. ``"tile"``) whose total is known only once the work
    starts: the progress object of :func:`looking_glass.results.buildings.export_buildings` and
    :func:`looking_glass.results.gap.job_gap`, which set ``total`` once and then call
    ``update(n)``. Nothing is drawn before ``total`` is set, nor when it is 0 (nothing to read);
    ``file``: where tqdm writes (standard error by default)."""

    def __init__(self, desc: str, unit: str, file=None, mininterval: float = 1.0) -> None:
        self.desc, self.unit, self.file, self.mininterval = desc, unit, file, mininterval
        self.bar = None
        self._total: int | None = None

    @property
    def total(self) -> int | None:
        """The number of items to count (None until set)."""
        return self._total

    @total.setter
    def total(self, value: int) -> None:
        self._total = int(value)
        if self.bar is None and self._total > 0:
            from tqdm import tqdm

            self.bar = tqdm(total=self._total, unit=self.unit, desc=self.desc, file=self.file,
                            mininterval=self.mininterval)
        elif self.bar is not None:
            self.bar.total = self._total
            self.bar.refresh()

    def update(self, n: int = 1) -> None:
        """Count ``n`` more items."""
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        """Close the bar (leaving its last line on screen)."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
