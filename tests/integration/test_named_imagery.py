"""Named imagery sources and job identity against moto: the enumerator refuses unregistered
names and puts the chosen name on every work unit; the worker reads each registered source
(opened once), and sends a hand-crafted unit naming anything else to the DLQ with the reason;
the same AOI, imagery and model is the same job, any change a new one."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import SAMPLE_POLYGON, drain, enumerator_env_with
from test_enumerator import store_of, upload_and_handle
from test_worker import JOB, settings_for, tiny_segmenter  # noqa: F401 - a fixture

from looking_glass.pipeline.enumerator import job_id_for_aoi
from looking_glass.pipeline.store import FAILED, RUNNING
from looking_glass.pipeline.workunits import WorkUnit, parse_work_unit
from looking_glass.runtime.imagery_sources import parse_sources

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "imagery"))
from test_mosaic import TILE_SIZE, X, Y, write_tif  # noqa: E402


def aoi_with(imagery=None, model="", rerun=None) -> bytes:
    doc = {"type": "Feature", "properties": {"name": "kigali"}, "geometry": SAMPLE_POLYGON}
    inputs = {"model": model, **({"imagery": imagery} if imagery else {}), **({"rerun": rerun} if rerun else {})}
    doc["looking_glass"] = inputs
    return json.dumps(doc).encode()


REGISTRY = {"city": "city.tif,old.tif", "osm": "https://t.example/{z}/{x}/{y}.png"}
SOURCES = parse_sources(REGISTRY)


@pytest.fixture
def enumerator(aws, monkeypatch):
    session, names, resources = aws
    with enumerator_env_with(monkeypatch, resources, LG_IMAGERY_SOURCES=json.dumps(REGISTRY)):
        yield session, names, resources


def test_the_chosen_source_is_recorded_and_on_every_unit(enumerator):
    session, names, resources = enumerator
    data = aoi_with("city", model="s3://reg/registry/m/2/model.keras")
    job_id, _ = upload_and_handle(session, names, resources, "k.geojson", data, SOURCES["city"].digest)
    assert job_id == job_id_for_aoi(resources.trigger_bucket, "aoi/k.geojson", data, SOURCES["city"].digest)
    job = store_of(session, names).get_job(job_id)
    assert job["status"] == RUNNING and job["imagery"] == "city" and job["model"] == "s3://reg/registry/m/2/model.keras"
    # what the name meant when the job ran
    assert job["imagery_digest"] == SOURCES["city"].digest and job["imagery_source"] == {"source": "city.tif,old.tif"}
    units = [parse_work_unit(m["Body"]) for m in drain(session.client("sqs"), resources.tile_queue_url)]
    # ... with its definition's digest, which the workers check (imagery.catalog)
    assert units and {(u.imagery, u.imagery_digest) for u in units} == {("city", SOURCES["city"].digest)}


def test_no_name_is_the_default_and_an_unknown_name_fails_the_job(enumerator):
    session, names, resources = enumerator
    default_job, _ = upload_and_handle(session, names, resources, "d.geojson", aoi_with())
    assert store_of(session, names).get_job(default_job)["imagery"] == "default"
    bad_job, _ = upload_and_handle(session, names, resources, "u.geojson", aoi_with("elsewhere"))
    job = store_of(session, names).get_job(bad_job)
    assert job["status"] == FAILED
    assert job["reason"] == "unknown imagery source 'elsewhere': not registered with this deployment (registered: city, default, osm)"
    units = [parse_work_unit(m["Body"]) for m in drain(session.client("sqs"), resources.tile_queue_url)]
    assert units and {(u.job_id, u.imagery) for u in units} == {(default_job, None)}  # nothing for the bad job
    assert {u.imagery_digest for u in units} == {None}  # the default's definition unknown here: unchecked


def test_same_inputs_are_one_job_and_a_new_model_imagery_or_rerun_a_new_one(enumerator):
    session, names, resources = enumerator
    ids = [upload_and_handle(session, names, resources, "same.geojson", data, SOURCES[name].digest)[0] for name, data in (
        ("city", aoi_with("city", "m1")), ("city", aoi_with("city", "m1")), ("city", aoi_with("city", "m2")),
        ("osm", aoi_with("osm", "m1")), ("city", aoi_with("city", "m1", rerun="2026-01-01T00:00:00+00:00")))]
    assert ids[0] == ids[1]
    assert len(set(ids)) == 4
    store = store_of(session, names)
    assert [store.get_job(i)["model"] for i in ids[2:4]] == ["m2", "m1"]


def test_a_name_registered_again_for_other_imagery_is_a_new_job(enumerator, monkeypatch):
    """The job id covers the source's definition, not only its name: the same AOI, name and model
    after `city` was registered again for other images (or another date) is a new job; the same
    definition deployed again (written another way) is the same job."""
    session, names, resources = enumerator
    store = store_of(session, names)
    data = aoi_with("city", "m1")

    def submit(registry: dict) -> str:
        monkeypatch.setenv("LG_IMAGERY_SOURCES", json.dumps(registry))
        digest = parse_sources(registry)["city"].digest
        job_id, _ = upload_and_handle(session, names, resources, "same.geojson", data, digest)
        assert store.get_job(job_id)["imagery_digest"] == digest  # the enumerator computed this id too
        return job_id

    first = submit(REGISTRY)
    assert submit({**REGISTRY, "osm": "https://other.example/{z}/{x}/{y}.png"}) == first  # another source changed
    assert submit({"city": " city.tif , old.tif "}) == first  # the same files, spaced otherwise
    redefined = [
        submit({"city": "city2024.tif"}),  # other images under the same name
        submit({"city": "old.tif,city.tif"}),  # the same images in another order: another overlap rule
        submit({"city": {"source": "city.tif,old.tif", "date": "2024-05-01"}}),  # a capture date registered
        submit({"city": {"source": "city.tif,old.tif", "bands": "3,2,1"}}),  # other bands
    ]
    assert len({first, *redefined}) == 5
    # the date written another way is the same date
    assert submit({"city": {"source": "city.tif,old.tif", "date": "2024-05-01T00:00:00Z"}}) == redefined[2]


def test_the_default_sources_definition_is_part_of_its_jobs_identity(enumerator, monkeypatch):
    """LG_DEFAULT_IMAGERY_SOURCE (the stacks set it) makes a redefined default a new job; without
    it (a deployment from before digests) the id is the content's alone, as it always was."""
    session, names, resources = enumerator
    store = store_of(session, names)
    data = aoi_with()
    legacy, _ = upload_and_handle(session, names, resources, "d.geojson", data)
    assert store.get_job(legacy)["imagery"] == "default" and "imagery_digest" not in store.get_job(legacy)
    ids = []
    for template in ("https://a.example/{z}/{x}/{y}.png", "https://b.example/{z}/{x}/{y}.png"):
        monkeypatch.setenv("LG_DEFAULT_IMAGERY_SOURCE", json.dumps({"source": template}))
        digest = parse_sources({"default": template})["default"].digest
        ids.append(upload_and_handle(session, names, resources, "d.geojson", data, digest)[0])
        assert store.get_job(ids[-1])["imagery_source"] == {"source": template}
    assert len({legacy, *ids}) == 3


def test_the_worker_reads_the_named_source_once_and_dead_letters_unknown_names(aws, tmp_path, tiny_segmenter):  # noqa: F811
    from looking_glass.pipeline.worker import Worker

    session, names, resources = aws
    new = write_tif(tmp_path / "new.tif", 200, 0, TILE_SIZE // 2, date="2023:06:01 09:30:00")
    sources = parse_sources(json.dumps({"city": f"{new}@2022-02-02", "other": str(new)}))
    store = store_of(session, names)
    store.create_job(JOB, {"status": RUNNING, "tiles_total": 3})
    sqs = session.client("sqs")
    for unit in (WorkUnit(JOB, 18, ((Y, X, X + 1),), "city"), WorkUnit(JOB, 18, ((Y, X + 1, X + 2),), "city"),
                 WorkUnit(JOB, 18, ((Y, X + 2, X + 3),), "nowhere")):
        sqs.send_message(QueueUrl=resources.tile_queue_url, MessageBody=unit.to_json())
    settings = replace(settings_for("http://127.0.0.1:9/{z}/{x}/{y}.png"), imagery_sources=sources)
    worker = Worker(session, resources, settings, tiny_segmenter)
    stats = worker.run()
    items = {int(i["x"]): i for i in store.tile_items(JOB)}
    assert items[X]["status"] == "done" and items[X]["imagery_name"] == "city" and items[X]["imagery"] == str(new)
    assert items[X]["capture_date"] == "2022-02-02"  # the registered date over the TIFF tag
    assert items[X + 1]["status"] == "no_imagery"
    assert set(worker.catalog._open) == {"default", "city"}  # opened once; 'other' never asked for
    assert stats.malformed == 1
    dead = sqs.receive_message(QueueUrl=resources.tile_dlq_url, MessageAttributeNames=["All"])["Messages"]
    reason = dead[0]["MessageAttributes"]["reason"]["StringValue"]
    assert reason == "unknown imagery source 'nowhere': not registered with this deployment (registered: city, default, other)"
    job = store.get_job(JOB)  # the dead-lettered tile has no result; the default source was never read
    assert job["status"] == RUNNING and job["tiles_final"] == 2 and stats.transient == 0


def test_a_malformed_imagery_name_is_a_malformed_unit():
    from looking_glass.pipeline.workunits import MalformedMessage

    body = json.dumps({"v": 1, "job_id": "a" * 24, "z": 18, "runs": [[1, 1, 2]], "imagery": "https://evil/{z}/{x}/{y}"})
    with pytest.raises(MalformedMessage, match="invalid imagery source name"):
        parse_work_unit(body)
