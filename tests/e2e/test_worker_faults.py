"""Fault injection on the embedded pipeline (issue 5): real worker processes, started with the
Batch container's entry point (``python -m looking_glass.pipeline.worker_main``, as the embedded
launcher does), against the moto server and a real HTTP tile server told to fail per tile.

After every fault: each tile has exactly one final status, the job's counters equal the sum of its
items, nothing is lost (every tile is stored or still on a queue), and the dead-letter queue holds
only what truly cannot be processed.

The tile queue gets a visibility timeout of a few seconds here (the deployed one is 600 s) so that
redeliveries happen within the test. Crash-after-write needs the process to die at one exact
point; ``FAULT_BOOT`` below is a test-only entry that patches the results store in the worker
process and then runs the real entry point unchanged.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from decimal import Decimal

import pytest
from conftest import REPO_ROOT, queued

from looking_glass.grid import quadkey
from looking_glass.imagery.status import TILE_STATUSES
from looking_glass.pipeline.launchers import WORKER_MODULE
from looking_glass.pipeline.store import COMPLETE, RUNNING, ResultsStore
from looking_glass.pipeline.workunits import WorkUnit
from looking_glass.runtime.resources import TILE_QUEUE_MAX_RECEIVE_COUNT

pytestmark = pytest.mark.e2e

Z = 18
Y0, X0 = 132486, 152950
VISIBILITY_S = 3  # the tile queue's visibility timeout in these tests
# How long a condition may take before a test fails: generous, as a worker's start (TensorFlow)
# and its work take many times longer on a loaded machine; a passing test waits only as long as
# its condition takes. No test waits a fixed time.
PATIENCE_S = 300
CRASH_EXIT_CODE = 70

# Test-only entry: the real worker entry point, with fault-injection switches that only this
# entry reads, applied to the results store of its own process:
#   LG_TEST_EXIT_AFTER_RECORD=N  die (os._exit) right after the N-th record_tiles call has
#                                written to DynamoDB, before the message is deleted;
#   LG_TEST_STALE_SKIP=1         final_quadkeys finds nothing, as when the redelivery's check ran
#                                before another worker's write landed: the conditional write is
#                                then all that stands between a redelivery and a double count;
#   LG_TEST_EXIT_BEFORE_COUNT=1  die right before the first ledger transaction: the unit's result
#                                object and tile items are written, its tiles not yet counted;
#   LG_TEST_LEDGER_BARRIER=DIR   after its first ledger read, wait until two reads (by any worker)
#                                have arrived in DIR, so two workers on one unit race to count it;
#   LG_TEST_NO_HEARTBEAT=1       never extend a message's visibility, so another worker receives
#                                a message this one still holds (as after a missed heartbeat);
#   LG_TEST_ONE_MESSAGE=1        receive one message, then find the queue empty ever after;
# and one to save time: LG_TEST_HOLD_START=1 imports the slow part (TensorFlow, the worker) and
# then waits for a line on stdin before running the entry point, so that a replacement worker can
# be made ready while the one it replaces is still at work.
FAULT_BOOT = r"""
import os, runpy, sys
from looking_glass.pipeline import store

crash_after = int(os.environ.get("LG_TEST_EXIT_AFTER_RECORD", "0"))
if crash_after:
    record_tiles = store.ResultsStore.record_tiles
    calls = []

    def record_then_die(self, job_id, results, provenance):
        stored = record_tiles(self, job_id, results, provenance)
        calls.append(stored)
        if len(calls) == crash_after:
            print(f"FAULT: exiting after record_tiles #{len(calls)} stored {stored}", flush=True)
            os._exit(%d)
        return stored

    store.ResultsStore.record_tiles = record_then_die
if os.environ.get("LG_TEST_EXIT_BEFORE_COUNT") == "1":
    def die_before_count(self, job_id, actions):
        print("FAULT: exiting before the ledger transaction", flush=True)
        os._exit(%d)

    store.ResultsStore._run_transaction = die_before_count
barrier = os.environ.get("LG_TEST_LEDGER_BARRIER")
if barrier:
    import time
    read_ledger = store.ResultsStore._read_ledger
    arrived = []

    def read_then_wait(self, job_id, ledger):
        found = read_ledger(self, job_id, ledger)
        if not arrived:
            arrived.append(1)
            open(os.path.join(barrier, f"{os.getpid()}-{time.monotonic_ns()}"), "w").close()
            print(f"TEST: read ledger {found}, waiting for the other reader", flush=True)
            deadline = time.monotonic() + 300  # the test's PATIENCE_S: the other worker may start slowly
            while len(os.listdir(barrier)) < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
        return found

    store.ResultsStore._read_ledger = read_then_wait
if os.environ.get("LG_TEST_ONE_MESSAGE") == "1":
    import time
    from looking_glass.pipeline import worker as worker_module
    init = worker_module.Worker.__init__

    def init_receiving_once(self, *args, **kwargs):
        init(self, *args, **kwargs)
        receive, got = self.sqs.receive_message, []

        def receive_once(**request):
            if got:
                time.sleep(request.get("WaitTimeSeconds", 0))
                return {"Messages": []}
            resp = receive(**request)
            got.extend(resp.get("Messages", []))
            return resp

        self.sqs.receive_message = receive_once

    worker_module.Worker.__init__ = init_receiving_once
if os.environ.get("LG_TEST_NO_HEARTBEAT") == "1":
    from looking_glass.pipeline import heartbeat
    heartbeat.VisibilityHeartbeat.extend_due = lambda self: 0
if os.environ.get("LG_TEST_STALE_SKIP") == "1":
    store.ResultsStore.final_quadkeys = lambda self, job_id, quadkeys: set()
if os.environ.get("LG_TEST_HOLD_START") == "1":
    import boto3, keras  # noqa: F401
    import looking_glass.imagery.xyz, looking_glass.model.segmenter, looking_glass.pipeline.worker  # noqa: F401
    print("TEST: ready, waiting for the go", flush=True)
    sys.stdin.readline()
entry = sys.argv[1]
sys.argv = [entry]
runpy.run_module(entry, run_name="__main__", alter_sys=True)
""" % (CRASH_EXIT_CODE, CRASH_EXIT_CODE)


def unit(job_id: str, row: int, x0: int, x1: int) -> WorkUnit:
    return WorkUnit(job_id, Z, ((Y0 + row, X0 + x0, X0 + x1),))


def keys_of(units) -> set[str]:
    return {quadkey(x, y, z) for u in units for x, y, z in u.tiles()}


def wait_for(condition, timeout: float, what: str, logs=lambda: "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{logs()}")
        time.sleep(0.05)


class Pipeline:
    """The moto resources of one test, its tile server, and the worker processes it starts."""

    def __init__(self, aws, tiles, log_dir):
        self.session, self.names, self.resources = aws
        self.sqs = self.session.client("sqs")
        self.store = ResultsStore(self.session.client("dynamodb"), self.names.results_table)
        self.tiles = tiles
        self.log_dir = log_dir
        self.procs: list[tuple[subprocess.Popen, object]] = []
        self.configure_queue(VISIBILITY_S, TILE_QUEUE_MAX_RECEIVE_COUNT)

    def configure_queue(self, visibility_s: int, max_receives: int) -> None:
        dlq_arn = self.sqs.get_queue_attributes(
            QueueUrl=self.resources.tile_dlq_url, AttributeNames=["QueueArn"]
        )["Attributes"]["QueueArn"]
        self.sqs.set_queue_attributes(
            QueueUrl=self.resources.tile_queue_url,
            Attributes={
                "VisibilityTimeout": str(visibility_s),
                "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receives}),
            },
        )

    def submit(self, job_id: str, units: list[WorkUnit], extra_bodies: list[str] = ()) -> set[str]:
        """A RUNNING job of these units (as the enumerator leaves it), the units on the queue."""
        keys = keys_of(units)
        self.store.create_job(job_id, {"status": RUNNING, "tiles_total": len(keys)})
        for body in [u.to_json() for u in units] + list(extra_bodies):
            self.sqs.send_message(QueueUrl=self.resources.tile_queue_url, MessageBody=body)
        return keys

    def start_worker(self, fault_boot: bool = False, held: bool = False, **settings) -> subprocess.Popen:
        """A worker process on the real entry point; ``fault_boot``: through FAULT_BOOT with the
        given switches; ``held``: ready but waiting for ``go``."""
        env = {
            **os.environ,
            **self.resources.to_env(),
            "LG_TILE_URL_TEMPLATE": self.tiles.url_template,
            "LG_MODEL_PATH": "",  # the shipped model: small, and what the image runs
            "LG_BATCH_SIZE": "8",
            "LG_DOWNLOAD_CONCURRENCY": "4",
            "LG_DOWNLOAD_TIMEOUT_S": "1",
            "LG_DOWNLOAD_RETRIES": "1",
            "LG_IDLE_EXIT_S": "600",  # the test says when it is over (see finish)
            "LG_POLL_WAIT_S": "1",
            "LG_RETRY_DELAY_S": "1",  # units kept after a temporary failure come back quickly
            # The queue's visibility here, as the stack sets both alike: the heartbeat keeps the
            # units a worker holds (several, downloading at once) invisible while it lives.
            "LG_VISIBILITY_TIMEOUT_S": str(VISIBILITY_S),
            "TF_CPP_MIN_LOG_LEVEL": "2",
            **{k: str(v) for k, v in settings.items()},
        }
        cmd = [sys.executable, "-m", WORKER_MODULE]
        if fault_boot or held:
            cmd = [sys.executable, "-c", FAULT_BOOT, WORKER_MODULE]
            env["LG_TEST_HOLD_START"] = "1" if held else "0"
        log_path = self.log_dir / f"worker-{len(self.procs)}.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                cmd, env=env, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.PIPE if held else subprocess.DEVNULL,
            )
        self.procs.append((proc, log_path))
        return proc

    @staticmethod
    def go(proc) -> None:
        """Let a held worker run its entry point."""
        proc.stdin.write(b"go\n")
        proc.stdin.close()

    def logs(self) -> str:
        return "\n".join(
            f"---- worker {i} (rc={p.poll()}) ----\n{path.read_text(errors='replace')[-6000:]}"
            for i, (p, path) in enumerate(self.procs)
        )

    def log_of(self, proc) -> str:
        return next(path for p, path in self.procs if p is proc).read_text(errors="replace")

    def wait_exit(self, proc, timeout: float) -> int:
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"worker did not exit within {timeout:.0f} s\n{self.logs()}") from None

    def finish(self, proc, done, what: str) -> None:
        """Wait until ``done()``, then SIGTERM the (now idle) worker: it must exit 0. Quicker and
        more certain than its idle exit, which could come before a redelivery is visible."""
        wait_for(lambda: done() or proc.poll() is not None, PATIENCE_S, what, self.logs)
        assert proc.poll() is None, f"worker exited early\n{self.logs()}"
        proc.send_signal(signal.SIGTERM)
        assert self.wait_exit(proc, PATIENCE_S) == 0, self.logs()

    def job_settled(self, job_id: str) -> bool:
        """The job is COMPLETE and no message is left on the tile queue. A job counted past its
        total can never complete: that fails at once rather than after the timeout."""
        job = self.store.get_job(job_id)
        assert job["tiles_final"] <= job["tiles_total"], f"tiles counted twice: {job}"
        return job["status"] == COMPLETE and queued(self.sqs, self.resources.tile_queue_url) == 0

    def completions(self, job_id: str) -> int:
        """How many times a worker made the job COMPLETE (the worker logs each time it does)."""
        pattern = re.compile(rf"job {job_id} complete\b")
        return sum(len(pattern.findall(path.read_text(errors="replace"))) for _, path in self.procs)

    def tiles_final(self, job_id: str) -> int:
        return int(self.store.get_job(job_id)["tiles_final"])

    def in_flight(self) -> int:
        attrs = self.sqs.get_queue_attributes(
            QueueUrl=self.resources.tile_queue_url, AttributeNames=["ApproximateNumberOfMessagesNotVisible"]
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessagesNotVisible"])

    def dead_letters(self) -> list[dict]:
        out = []
        while True:
            msgs = self.sqs.receive_message(
                QueueUrl=self.resources.tile_dlq_url, MaxNumberOfMessages=10, VisibilityTimeout=300,
                MessageAttributeNames=["All"],
            ).get("Messages", [])
            if not msgs:
                return out
            out.extend(msgs)

    def stop(self) -> None:
        for proc, _ in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
            if proc.stdin:
                proc.stdin.close()


@pytest.fixture
def pipeline(aws, fault_tiles, tmp_path):
    pipe = Pipeline(aws, fault_tiles, tmp_path)
    try:
        yield pipe
    finally:
        pipe.stop()


def assert_accounted(
    pipe: Pipeline, job_id: str, keys: set[str], elsewhere: set[str] = frozenset(), complete: bool = True
) -> dict:
    """Each tile has exactly one final status, or is ``elsewhere`` (in a message still on a queue
    or in the dead-letter queue) and not stored; the job's counters are the sums of its items.
    Returns the items by quadkey."""
    items = pipe.store.tile_items(job_id)
    found = [i["quadkey"] for i in items]
    assert len(found) == len(set(found)), "a tile has more than one item"
    stored = set(found)
    assert all(i["status"] in TILE_STATUSES for i in items)
    assert stored <= keys, f"items for tiles not in the job: {stored - keys}"
    assert not stored & elsewhere, f"tiles both stored and still pending: {stored & elsewhere}"
    assert stored | elsewhere == keys, f"lost tiles: {keys - stored - elsewhere}"
    job = pipe.store.get_job(job_id)
    by_status = Counter(i["status"] for i in items)
    for status in TILE_STATUSES:
        assert job[f"tiles_{status}"] == by_status[status], (status, job, by_status)
    assert job["tiles_final"] == len(items)
    assert job["building_area_m2"] == sum((Decimal(i["building_area_m2"]) for i in items), Decimal(0))
    assert all(i["building_area_m2"] == 0 for i in items if i["status"] != "done")
    if complete:
        assert job["status"] == COMPLETE and job.get("finished_at"), job
        assert job["tiles_final"] == job["tiles_total"] == len(keys)
        assert pipe.completions(job_id) == 1, pipe.logs()
    else:
        assert job["status"] == RUNNING and "finished_at" not in job, job
        assert pipe.completions(job_id) == 0
    return {i["quadkey"]: i for i in items}


def qk(row: int, x: int) -> str:
    return quadkey(X0 + x, Y0 + row, Z)


# ---- HTTP faults, duplicates, a poison unit and a malformed message, in one run ---------------

JOB_A = "fa0175fa0175fa0175fa0175"
JOB_B = "b0150eb0150eb0150eb0150e"
MALFORMED = '{"v": 1, "job_id": "not-a-job", "z": 18, "runs": [[1, 2, 3]]}'


def test_http_faults_duplicates_and_poison_units_are_each_accounted_for(pipeline):
    """One worker process drains: a unit with final-status faults (404, 204, corrupt, HTML,
    wrong size, blank), one with faults a retry inside the fetch cures (429 with Retry-After,
    timeout, connection cut mid-body, 503), one whose 500s outlast the retries (kept, then done on
    redelivery), a duplicate delivery, a malformed message, and a poison unit of another job that
    never succeeds (a tile always 500, one always slower than the timeout)."""
    pipe, tiles = pipeline, pipeline.tiles
    pipe.configure_queue(VISIBILITY_S, 3)  # maxReceiveCount 3 (5 deployed): the poison dies sooner
    final_faults = ["not_found", "no_content", "corrupt", "html", "wrong_size", "blank"]
    for x, kind in enumerate(final_faults):
        tiles.set_fault(Z, X0 + x, Y0, kind)
    tiles.set_fault(Z, X0 + 0, Y0 + 1, "rate_limited", times=1, retry_after=1)
    tiles.set_fault(Z, X0 + 1, Y0 + 1, "slow", times=1)
    tiles.set_fault(Z, X0 + 2, Y0 + 1, "truncated", times=1)
    tiles.set_fault(Z, X0 + 3, Y0 + 1, "server_error", times=1, status=503)
    tiles.set_fault(Z, X0 + 0, Y0 + 2, "server_error", times=2)  # both attempts of delivery 1
    tiles.set_fault(Z, X0 + 1, Y0 + 3, "server_error")
    tiles.set_fault(Z, X0 + 2, Y0 + 3, "slow")

    final, cured, redelivered = unit(JOB_A, 0, 0, 8), unit(JOB_A, 1, 0, 6), unit(JOB_A, 2, 0, 4)
    poison = unit(JOB_B, 3, 0, 3)
    keys_b = pipe.submit(JOB_B, [poison])
    keys_a = pipe.submit(JOB_A, [final, cured, redelivered], extra_bodies=[final.to_json(), MALFORMED])

    worker = pipe.start_worker()
    pipe.finish(
        worker,
        lambda: pipe.job_settled(JOB_A) and queued(pipe.sqs, pipe.resources.tile_dlq_url) == 2,
        "job A complete, both bad messages dead-lettered",
    )

    items = assert_accounted(pipe, JOB_A, keys_a)
    expected = {
        qk(0, 0): ("no_imagery", "HTTP 404"),
        qk(0, 1): ("no_imagery", "HTTP 204"),
        qk(0, 2): ("failed", "not a decodable image"),
        qk(0, 3): ("failed", "not a decodable image"),
        qk(0, 4): ("failed", "128x128"),
        qk(0, 5): ("skipped", "blank"),
    }
    for key, item in items.items():
        status, reason = expected.get(key, ("done", None))
        assert item["status"] == status, (key, item)
        if reason:
            assert reason in item["reason"], (key, item)
    assert Counter(i["status"] for i in items.values()) == {"done": 12, "failed": 3, "no_imagery": 2, "skipped": 1}
    assert all(items[k]["mask_key"] for k in items if items[k]["status"] == "done")

    limited = tiles.requests_for(Z, X0, Y0 + 1)
    # Retry-After: 1 was honoured: nothing asked again within the second. Under heavy load a unit can
    # also come back after its 3 s visibility (at-least-once), which may add a later fetch.
    assert len(limited) >= 2 and limited[1] - limited[0] >= 1.0
    assert len(tiles.requests_for(Z, X0, Y0 + 2)) == 3  # 2 failed attempts, then the redelivery

    # The poison unit: its good tile stored once, the others nowhere but in the dead letter,
    # after exactly maxReceiveCount deliveries of two attempts each.
    assert_accounted(pipe, JOB_B, keys_b, elsewhere={qk(3, 1), qk(3, 2)}, complete=False)
    assert len(tiles.requests_for(Z, X0 + 1, Y0 + 3)) == 3 * 2
    assert len(tiles.requests_for(Z, X0, Y0 + 3)) >= 1

    assert queued(pipe.sqs, pipe.resources.tile_queue_url) == 0
    dead = pipe.dead_letters()
    assert sorted(m["Body"] for m in dead) == sorted([poison.to_json(), MALFORMED]), dead
    malformed = next(m for m in dead if m["Body"] == MALFORMED)
    assert "invalid job_id" in malformed["MessageAttributes"]["reason"]["StringValue"]


# ---- a worker killed mid-batch, and one stopped by SIGTERM mid-batch ---------------------------

JOB_K = "c1a55c1a55c1a55c1a55c1a5"
JOB_T = "7e7e7e7e7e7e7e7e7e7e7e7e"


def test_sigkill_mid_batch_then_a_new_worker_loses_and_double_counts_nothing(pipeline):
    """Kill -9 while the worker holds a unit (one of its tiles hangs) with earlier units stored;
    a fresh worker gets the held unit once its visibility runs out, and finishes the job."""
    pipe, tiles = pipeline, pipeline.tiles
    units = [unit(JOB_K, r, 0, 4) for r in range(5)]
    tiles.set_fault(Z, X0 + 2, Y0 + 3, "slow")  # unit 4 hangs on this tile until released
    keys = pipe.submit(JOB_K, units)

    first = pipe.start_worker(LG_DOWNLOAD_TIMEOUT_S="60")
    second = pipe.start_worker(held=True)
    wait_for(lambda: tiles.requests_for(Z, X0 + 2, Y0 + 3) and pipe.tiles_final(JOB_K) == 12,
             PATIENCE_S, "units 1-3 stored and unit 4 in hand", pipe.logs)
    first.send_signal(signal.SIGKILL)
    assert first.wait(PATIENCE_S) == -signal.SIGKILL
    job = pipe.store.get_job(JOB_K)
    assert job["status"] == RUNNING and job["tiles_final"] == 12
    assert pipe.in_flight() >= 1  # unit 4 was held by the dead worker

    tiles.clear_faults()
    tiles.release()
    pipe.go(second)
    pipe.finish(second, lambda: pipe.job_settled(JOB_K), "the job to complete")
    items = assert_accounted(pipe, JOB_K, keys)
    assert all(i["status"] == "done" for i in items.values())
    assert len(tiles.requests_for(Z, X0 + 2, Y0 + 3)) == 1  # fetched again only by the new worker
    assert queued(pipe.sqs, pipe.resources.tile_queue_url) == 0
    assert pipe.dead_letters() == []


def test_sigterm_mid_batch_stops_intake_exits_0_and_a_new_worker_finishes(pipeline):
    """SIGTERM while a unit's tile hangs: the worker takes no more units, settles the one in hand
    (its tile times out: kept for redelivery), exits 0; a new worker finishes the job."""
    pipe, tiles = pipeline, pipeline.tiles
    units = [unit(JOB_T, r, 0, 4) for r in range(4)]
    tiles.set_fault(Z, X0 + 1, Y0 + 2, "slow")  # unit 3 hangs on this tile
    keys = pipe.submit(JOB_T, units)

    # The hanging tile times out after 20 s: the test must see units 1-2 stored and unit 3 in
    # hand (and send SIGTERM) before that, or unit 3 is done and unit 4 taken. With 2 s, a loaded
    # machine (load 20) could store units 1-2 after the timeout had already passed.
    first = pipe.start_worker(LG_DOWNLOAD_TIMEOUT_S="20", LG_DOWNLOAD_RETRIES="0")
    second = pipe.start_worker(held=True)
    wait_for(lambda: tiles.requests_for(Z, X0 + 1, Y0 + 2) and pipe.tiles_final(JOB_T) == 8,
             PATIENCE_S, "units 1-2 stored and unit 3 in hand", pipe.logs)
    first.send_signal(signal.SIGTERM)
    assert pipe.wait_exit(first, PATIENCE_S) == 0, pipe.logs()
    assert "finishing in-flight work" in pipe.log_of(first)

    stored = {i["quadkey"] for i in pipe.store.tile_items(JOB_T)}
    assert not stored & keys_of(units[3:]), "took a unit after SIGTERM"
    assert qk(2, 1) not in stored
    assert_accounted(pipe, JOB_T, keys, elsewhere=keys - stored, complete=False)  # the rest: queued
    assert queued(pipe.sqs, pipe.resources.tile_queue_url) == 2

    tiles.clear_faults()
    tiles.release()
    pipe.go(second)
    pipe.finish(second, lambda: pipe.job_settled(JOB_T), "the job to complete")
    assert_accounted(pipe, JOB_T, keys)
    assert queued(pipe.sqs, pipe.resources.tile_queue_url) == 0
    assert pipe.dead_letters() == []


# ---- crash after the DynamoDB write, before the SQS delete ------------------------------------

JOB_C = "c4a50c4a50c4a50c4a50c4a5"


def test_crash_after_write_before_delete_is_not_double_counted(pipeline):
    """The worker dies right after the job's last unit is written to DynamoDB, before that
    message is deleted (and before it could mark the job COMPLETE). The redelivered unit must not
    move the counters again, even when the skip check misses (as if it ran before the write
    landed) and the conditional write alone stands in the way; and it must make the job COMPLETE,
    once. (A redelivery whose skip check works is the redelivered unit of the first test.)"""
    pipe, tiles = pipeline, pipeline.tiles
    units = [unit(JOB_C, r, 0, 4) for r in range(3)]
    keys = pipe.submit(JOB_C, units)

    crashing = pipe.start_worker(fault_boot=True, LG_TEST_EXIT_AFTER_RECORD=3)
    recovering = pipe.start_worker(held=True, LG_TEST_STALE_SKIP="1")
    assert pipe.wait_exit(crashing, PATIENCE_S) == CRASH_EXIT_CODE, pipe.logs()
    job = pipe.store.get_job(JOB_C)
    assert job["tiles_final"] == job["tiles_total"] == 12 and job["status"] == RUNNING
    assert queued(pipe.sqs, pipe.resources.tile_queue_url) == 1  # the last unit, not deleted
    written = {i["quadkey"]: i for i in pipe.store.tile_items(JOB_C)}

    pipe.go(recovering)
    pipe.finish(recovering, lambda: pipe.job_settled(JOB_C), "the job to complete")
    items = assert_accounted(pipe, JOB_C, keys)
    assert items == written  # the first write stands, untouched
    assert re.search(r"done: \d+ messages, 0 new tile results", pipe.log_of(recovering)), pipe.logs()
    refetched = [len(tiles.requests_for(z, x, y)) for x, y, z in units[2].tiles()]
    assert refetched == [2] * 4  # the redelivery really went as far as the write
    assert queued(pipe.sqs, pipe.resources.tile_queue_url) == 0
    assert pipe.dead_letters() == []


# ---- the per-unit ledger: two workers on one unit, a crash between the object and the ledger ----

JOB_R = "2ace2ace2ace2ace2ace2ace"
JOB_L = "1ed6e71ed6e71ed6e71ed6e7"


def test_two_workers_holding_the_same_message_count_its_unit_once(pipeline, tmp_path):
    """The first worker misses its heartbeat, so the unit's message becomes visible again while it
    still holds it and the second worker receives it too. Both read the unit's empty ledger
    before either counts (a barrier), both write the tile items; one transaction counts the
    tiles, the other is refused (the ledger's version moved) and counts nothing."""
    pipe, tiles = pipeline, pipeline.tiles
    units = [unit(JOB_R, 0, 0, 4)]
    keys = pipe.submit(JOB_R, units)
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    first = pipe.start_worker(fault_boot=True, LG_TEST_LEDGER_BARRIER=barrier, LG_TEST_NO_HEARTBEAT="1",
                              LG_TEST_ONE_MESSAGE="1")
    second = pipe.start_worker(held=True, LG_TEST_LEDGER_BARRIER=barrier)
    wait_for(lambda: len(list(barrier.iterdir())) == 1, PATIENCE_S, "the first worker at the ledger", pipe.logs)
    pipe.go(second)  # the message is visible again VISIBILITY_S after the first receive
    wait_for(lambda: pipe.job_settled(JOB_R), PATIENCE_S, "the job to complete", pipe.logs)
    for proc in (first, second):
        proc.send_signal(signal.SIGTERM)
        assert pipe.wait_exit(proc, PATIENCE_S) == 0, pipe.logs()
    assert len(list(barrier.iterdir())) == 2  # both really read the ledger before either counted
    items = assert_accounted(pipe, JOB_R, keys)
    assert all(i["status"] == "done" for i in items.values())
    new = sorted(int(m) for p in (first, second)
                 for m in re.findall(r"done: \d+ messages, (\d+) new tile results", pipe.log_of(p)))
    assert new == [0, 4], pipe.logs()
    assert [len(tiles.requests_for(z, x, y)) for x, y, z in units[0].tiles()] == [2] * 4  # both did the work
    assert queued(pipe.sqs, pipe.resources.tile_queue_url) == 0
    assert pipe.dead_letters() == []


def test_crash_between_the_result_object_and_the_ledger_is_redone_and_counted_once(pipeline):
    """The worker dies after the unit's result object and tile items are written, before its
    ledger transaction. The items are there but not counted, so they are not final: the
    redelivery does the unit again (a real skip check, not a stale one) and counts it once; the
    masks read back from the object through the one reader."""
    from looking_glass.results.masks import read_tile_masks

    pipe, tiles = pipeline, pipeline.tiles
    units = [unit(JOB_L, 0, 0, 4)]
    keys = pipe.submit(JOB_L, units)
    crashing = pipe.start_worker(fault_boot=True, LG_TEST_EXIT_BEFORE_COUNT="1")
    recovering = pipe.start_worker(held=True)
    assert pipe.wait_exit(crashing, PATIENCE_S) == CRASH_EXIT_CODE, pipe.logs()
    s3 = pipe.session.client("s3")
    assert len(s3.list_objects_v2(Bucket=pipe.resources.masks_bucket, Prefix=f"masks/{JOB_L}/")["Contents"]) == 1
    assert len(pipe.store.tile_items(JOB_L)) == 4 and pipe.tiles_final(JOB_L) == 0  # written, not counted
    assert pipe.store.final_quadkeys(JOB_L, sorted(keys)) == set()

    pipe.go(recovering)
    pipe.finish(recovering, lambda: pipe.job_settled(JOB_L), "the job to complete")
    items = assert_accounted(pipe, JOB_L, keys)
    assert re.search(r"done: 1 messages, 4 new tile results", pipe.log_of(recovering)), pipe.logs()
    assert [len(tiles.requests_for(z, x, y)) for x, y, z in units[0].tiles()] == [2] * 4
    for item, mask in read_tile_masks(s3, pipe.resources.masks_bucket, items.values()):
        assert int(mask.sum()) == item["building_pixels"]
    assert pipe.dead_letters() == []
