"""The job progress bar: its count and the figures beside it name the same tiles; before the
first tile it says what the job waits for, and it is redrawn while nothing moves."""

from __future__ import annotations

import io
import re

import pytest

from looking_glass.pipeline.progress import CountBar, JobProgress, outcome_counts, progress_text


def job(status="RUNNING", done=0, failed=0, no_imagery=0, skipped=0, total=314):
    final = done + failed + no_imagery + skipped
    return {"status": status, "tiles_total": total, "tiles_done": done, "tiles_failed": failed,
            "tiles_no_imagery": no_imagery, "tiles_skipped": skipped, "tiles_final": final}


@pytest.mark.parametrize("record, workers, text", [
    (job("ENQUEUEING"), None, "enqueueing work units"),
    (job(), 0, "waiting for a worker to start"),
    (job(), 1, "1 worker starting (loading the model)"),
    (job(), 2, "2 workers starting (loading the model)"),
    (job(), None, "workers starting (loading the model)"),
    ({**job(), "retry_reason": "tile 18/1/2: ConnectionError after 4 attempts"}, 1, "retrying work units (imagery failing)"),
    (job(done=5), 2, "done 5, failed 0"),
    (job(done=1200, failed=3, no_imagery=2), 2, "done 1,200, failed 3, no imagery 2"),
    (job(done=1, skipped=4), None, "done 1, failed 0, skipped 4"),
])
def test_progress_text(record, workers, text):
    assert progress_text(record, workers) == text


def test_the_figures_add_up_to_the_final_count():
    record = job(done=7, failed=2, no_imagery=3, skipped=1)
    assert sum(outcome_counts(record).values()) == record["tiles_final"] == 13


def test_the_bar_counts_what_its_figures_name_and_moves_while_workers_start():
    out = io.StringIO()
    bar = JobProgress("tiles", file=out, mininterval=0)
    bar.update(None)
    bar.update({"status": "ENQUEUEING"})  # no tile count yet: no bar
    assert bar.bar is None and out.getvalue() == ""
    bar.update(job(), workers=1)
    bar.update(job(), workers=1)  # nothing moved: redrawn all the same
    starting = out.getvalue()
    assert starting.count("0/314") >= 2 and "1 worker starting" in starting
    for record in (job(done=40, failed=1), job(done=200, failed=1, no_imagery=13), job("COMPLETE", done=300, failed=1, no_imagery=13)):
        bar.update(record, workers=1)
        assert bar.bar.n == record["tiles_final"]
    bar.close()
    lines = [line for line in re.split(r"[\r\n]", out.getvalue()) if "/314" in line]
    for line in lines:
        count = int(re.search(r"(\d+)/314", line).group(1))
        figures = [int(n.replace(",", "")) for n in re.findall(r"(?:done|failed|no imagery|skipped) ([\d,]+)", line)]
        assert not figures or sum(figures) == count, line
    assert "314/314" in lines[-1] and "done 300, failed 1, no imagery 13" in lines[-1]


@pytest.mark.parametrize("status", ["COMPLETE", "FAILED"])
def test_a_job_final_when_first_seen_draws_no_bar_and_no_rate(status):
    """Issue 18: resubmitting inputs a job already holds, `--wait` drew 0 -> 314 in no time, at
    `234100.69tile/s`; the final status line says it all."""
    out = io.StringIO()
    bar = JobProgress("tiles", file=out, mininterval=0)
    bar.update(job(status, done=300, failed=14))
    bar.close()
    assert bar.bar is None and out.getvalue() == ""


def test_a_disabled_bar_prints_nothing():
    out = io.StringIO()
    bar = JobProgress("tiles", enabled=False, file=out)
    bar.update(job(done=3))
    bar.close()
    assert out.getvalue() == ""


def test_a_bar_that_does_not_move_is_redrawn_at_most_every_mininterval():
    out = io.StringIO()  # a log file, not a terminal: one line per redraw
    bar = JobProgress("tiles", file=out, mininterval=60)
    for _ in range(20):
        bar.update(job(), workers=1)
    assert out.getvalue().count("0/314") <= 2


def test_the_job_bar_shows_the_average_rate_not_the_last_jump():
    # Tiles are counted a work unit at a time: tqdm's default smoothing would show the speed of
    # one 64-tile jump (and an ETA swinging with it).
    bar = JobProgress("tiles", file=io.StringIO(), mininterval=0)
    bar.update(job(done=64))
    assert bar.bar.smoothing == 0
    bar.close()


def test_a_count_bar_is_drawn_only_once_its_total_is_known():
    out = io.StringIO()
    bar = CountBar("compare", "tile", file=out, mininterval=0)
    bar.update(1)  # before the total: nothing to count against, nothing drawn
    assert out.getvalue() == ""
    bar.total = 3
    for _ in range(3):
        bar.update(1)
    bar.close()
    text = out.getvalue()
    assert "compare" in text and "3/3" in text and "tile/s" in text
    assert not re.search(r"(?<![\d.])0tile", text) and re.search(r"\b0/3\b", text)


def test_a_count_bar_with_nothing_to_count_prints_nothing():
    out = io.StringIO()
    bar = CountBar("export", "tile", file=out)
    bar.total = 0  # a job without done tiles
    bar.update(0)
    bar.close()
    assert out.getvalue() == ""
