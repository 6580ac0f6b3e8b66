"""SIGTERM (spot reclaim) on the real worker process: stop intake, finish what is in hand, exit 0,
lose nothing: every tile is either stored or still on the queue."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from looking_glass.local.tileserver import SyntheticTileServer
from looking_glass.pipeline.store import RUNNING, ResultsStore
from looking_glass.pipeline.workunits import pack_runs, parse_work_unit

JOB = "5157e4a15157e4a15157e4a1"


@pytest.mark.e2e
def test_sigterm_finishes_in_flight_work_and_exits_cleanly(aws, moto_endpoint):
    session, names, resources = aws
    store = ResultsStore(session.client("dynamodb"), names.results_table)
    runs = np.array([[132400 + r, 152900, 152916] for r in range(8)])  # 128 tiles, 16 per unit
    store.create_job(JOB, {"status": RUNNING, "tiles_total": 128})
    sqs = session.client("sqs")
    for unit in pack_runs(JOB, 18, runs, 16):
        sqs.send_message(QueueUrl=resources.tile_queue_url, MessageBody=unit.to_json())

    with SyntheticTileServer(latency_s=0.05) as tiles:
        env = {
            **os.environ,
            **resources.to_env(),
            "LG_TILE_URL_TEMPLATE": tiles.url_template,
            "LG_DOWNLOAD_CONCURRENCY": "2",  # slow on purpose: there is work in hand at SIGTERM
            "LG_IDLE_EXIT_S": "5",
            "LG_POLL_WAIT_S": "1",
            "LG_BATCH_SIZE": "8",
        }
        proc = subprocess.Popen([sys.executable, "-m", "looking_glass.pipeline.worker_main"], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 120
        while store.get_job(JOB)["tiles_final"] == 0 and time.monotonic() < deadline:
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    assert time.monotonic() - sent < 120
    assert "finishing in-flight work" in out

    job = store.get_job(JOB)
    stored = {i["quadkey"] for i in store.tile_items(JOB)}
    assert 0 < job["tiles_final"] == len(stored) < 128  # stopped early, counters match the items
    # Nothing lost: what is not stored is still on the queue for another worker.
    time.sleep(0.1)
    left = []
    while True:
        msgs = sqs.receive_message(QueueUrl=resources.tile_queue_url, MaxNumberOfMessages=10,
                                   VisibilityTimeout=60).get("Messages", [])
        if not msgs:
            break
        left += [t for m in msgs for t in parse_work_unit(m["Body"]).tiles()]
    from looking_glass.grid import quadkey

    pending = {quadkey(x, y, z) for x, y, z in left}
    assert stored | pending == {quadkey(x, y, 18) for y, a, b in runs.tolist() for x in range(a, b)}
