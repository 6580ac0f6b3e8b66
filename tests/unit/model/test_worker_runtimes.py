"""The worker stores the same results whichever runtime runs the shipped model, and records which
one did (moto and the synthetic tile server, in-process)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("keras")
pytest.importorskip("onnxruntime")

from looking_glass.model.inference import onnx_problem  # noqa: E402
from looking_glass.model.segmenter import SHIPPED_MODEL, Segmenter  # noqa: E402
from looking_glass.pipeline.store import RUNNING, ResultsStore  # noqa: E402
from looking_glass.pipeline.workunits import pack_runs  # noqa: E402
from looking_glass.runtime.settings import WorkerSettings  # noqa: E402

RUNS = [[132480, 152950, 152954], [132481, 152950, 152954]]  # 8 tiles of the demo area


def _run(session, names, resources, template, job, segmenter):
    from looking_glass.pipeline.worker import Worker

    store = ResultsStore(session.client("dynamodb"), names.results_table)
    store.create_job(job, {"status": RUNNING, "tiles_total": 8})
    sqs = session.client("sqs")
    for unit in pack_runs(job, 18, np.array(RUNS), 8):
        sqs.send_message(QueueUrl=resources.tile_queue_url, MessageBody=unit.to_json())
    settings = WorkerSettings(
        tile_url_template=template, model_path="", batch_size=8, threshold=0.5, download_concurrency=4,
        download_timeout_s=5.0, download_retries=0, write_masks=False, idle_exit_s=0.5, poll_wait_s=0,
    )
    Worker(session, resources, settings, segmenter).run()
    return {i["quadkey"]: i for i in store.tile_items(job)}


def test_the_worker_results_are_the_same_with_either_runtime(aws, tile_server):
    if onnx_problem(SHIPPED_MODEL):
        pytest.skip(f"the shipped model has no usable ONNX export: {onnx_problem(SHIPPED_MODEL)}")
    session, names, resources = aws
    onnx = _run(session, names, resources, tile_server.url_template, "a" * 24,
                Segmenter.load(runtime="onnx", threads=1))
    keras = _run(session, names, resources, tile_server.url_template, "b" * 24, Segmenter.load(runtime="keras"))
    assert len(onnx) == len(keras) == 8
    assert sum(float(i["building_area_m2"]) for i in keras.values()) > 0
    for quadkey, item in keras.items():
        assert float(onnx[quadkey]["building_area_m2"]) == pytest.approx(float(item["building_area_m2"]), rel=1e-6)
        assert item["model_runtime"] == "keras/CPU"
        assert onnx[quadkey]["model_runtime"] == "onnx/CPUExecutionProvider"
        assert onnx[quadkey]["model_version"] == item["model_version"]
