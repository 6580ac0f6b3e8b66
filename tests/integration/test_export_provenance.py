"""Exports say where they come from: each building its job, imagery source, the capture dates of
the done tiles it lies on and the model that produced them; the file its job, the job's model (as
``jobs`` names it), the imagery and its attribution; ``.osm`` ways ``source``/``source:date``
tags by OSM's conventions. Also for ``export --unmapped``."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import numpy as np
import pyogrio
import pytest
import shapely
from test_export_buildings import JOB, S, _mapped_file, put_job

from looking_glass.outlines.exports import WrittenFeature, write_vector
from looking_glass.results.buildings import export_buildings, osm_tags
from looking_glass.results.gap import EmptyReferenceWarning, export_unmapped

TILES = {(dx, dy): "done" for dx in range(3) for dy in range(2)}
DATES = {(0, 0): "2021-01-01", (1, 0): "2023-05-05", (2, 0): "2022-02-02,2020-01-01"}  # (2, 0): a mosaic
RUN = {"model_id": "seg", "model_version": "7", "imagery": "/data/a.tif"}
RECORD = {"imagery": "kigali-2023", "model": "s3://b/registry/seg/7/model.keras"}


def _mosaic():
    m = np.zeros((2 * S, 3 * S), bool)
    m[20:60, 200:256] = True  # in tile (0, 0), its east side on the edge of tile (1, 0)
    m[100:140, 490:540] = True  # across tiles (1, 0) and (2, 0)
    m[300:360, 100:150] = True  # in tile (0, 1), whose imagery has no date
    return m


@pytest.fixture
def job(aws):
    return put_job(aws, TILES, mosaic_of=_mosaic(), dates=DATES, provenance=RUN, job=RECORD)


def _columns(path) -> dict:
    """Every column of a vector file's ``buildings`` layer: name -> list of values."""
    meta, _, _, values = pyogrio.raw.read(path, layer="buildings")
    return {name: v.tolist() for name, v in zip(meta["fields"], values)}


def _by_x(features):
    """Feature properties by the building's westernmost tile column (0: on tile 0 only, ...)."""
    return sorted(features, key=lambda p: (p["y"], p["x"]))


def test_geojson_buildings_and_file_say_where_they_come_from(job, tmp_path):
    store, s3, bucket = job
    out = tmp_path / "b.geojson"
    export_buildings(store, s3, bucket, JOB, str(out), "geojson", attribution="(c) Agency 2023")
    doc = json.loads(out.read_text())
    assert doc["looking_glass"] == {"generator": "Looking Glass", "job_id": JOB, "job_model": "seg/7",
                                    "imagery": "kigali-2023", "attribution": "(c) Agency 2023"}
    edge, across, undated = _by_x([f["properties"] for f in doc["features"]])
    assert edge["capture_date"] == "2021-01-01"  # touching tile (1, 0)'s edge does not put it there
    assert across["capture_date"] == "2023-05-05,2022-02-02,2020-01-01"  # both tiles' dates, newest first
    assert undated["capture_date"] == ""
    for p in (edge, across, undated):
        assert (p["job_id"], p["imagery"], p["model"]) == (JOB, "kigali-2023", "seg/7")


def test_osm_ways_carry_source_and_source_date(job, tmp_path):
    store, s3, bucket = job
    out = tmp_path / "b.osm"
    export_buildings(store, s3, bucket, JOB, str(out), "osm", attribution="(c) Agency -- 2023")
    root = ET.parse(out).getroot()
    tags = [{t.get("k"): t.get("v") for t in w.findall("tag")} for w in root.findall("way")]
    assert all(t["building"] == "yes" and t["source"] == "kigali-2023;Looking Glass seg/7" for t in tags)
    assert sorted(t.get("source:date", "") for t in tags) == ["", "2021-01-01", "2023-05-05;2022-02-02;2020-01-01"]
    assert f'"job_id": "{JOB}"' in out.read_text()  # the file's metadata in a comment ("--" kept out)


@pytest.mark.parametrize("fmt", ["gpkg", "fgb"])
def test_vector_files_have_provenance_columns_and_layer_metadata(job, tmp_path, fmt):
    store, s3, bucket = job
    out = tmp_path / f"b.{fmt}"
    export_buildings(store, s3, bucket, JOB, str(out), fmt)
    info = pyogrio.read_info(out, layer="buildings")
    assert {"job_id", "imagery", "capture_date", "model"} <= set(info["fields"])
    columns = _columns(out)
    assert sorted(columns["capture_date"]) == ["", "2021-01-01", "2023-05-05,2022-02-02,2020-01-01"]
    assert set(columns["model"]) == {"seg/7"} and set(columns["job_id"]) == {JOB}
    assert set(columns["imagery"]) == {"kigali-2023"}
    if fmt == "gpkg":
        meta = info["layer_metadata"]
    else:  # FlatGeobuf keeps no layer metadata across appended batches: the same keys are columns
        meta = {k: columns[k][0] for k in ("job_id", "job_model", "imagery", "attribution", "generator")}
        assert meta["generator"] == "Looking Glass"
    assert (meta["job_id"], meta["job_model"], meta["imagery"]) == (JOB, "seg/7", "kigali-2023")


@pytest.mark.parametrize("suffix", [".gpkg", ".fgb"])
def test_metadata_survives_the_appended_batches(tmp_path, suffix):
    feats = [WrittenFeature(shapely.box(i, 0, i + 0.5, 0.5), {"id": i, "job_id": "J"}) for i in range(5)]
    out = tmp_path / f"b{suffix}"
    assert write_vector(feats, out, batch=2, meta={"job_id": "J", "job_model": "seg/7"}) == 5
    info = pyogrio.read_info(out, layer="buildings")
    if suffix == ".gpkg":
        assert info["layer_metadata"] == {"job_id": "J", "job_model": "seg/7"}
    else:
        assert _columns(out)["job_model"] == ["seg/7"] * 5


def test_a_job_without_model_or_imagery_records_says_default(aws, tmp_path):
    store, s3, bucket = put_job(aws, {(0, 0): "done"})
    out = tmp_path / "b.geojson"
    export_buildings(store, s3, bucket, JOB, str(out), "geojson")
    doc = json.loads(out.read_text())
    assert (doc["looking_glass"]["job_model"], doc["looking_glass"]["imagery"]) == ("default", "default")
    assert {f["properties"]["model"] for f in doc["features"]} == {"m"}  # the workers' model id, no version


def test_unmapped_export_carries_the_same_provenance(job, tmp_path):
    store, s3, bucket = job
    mapped = _mapped_file(tmp_path / "osm.geojson", [])
    out = tmp_path / "todo.geojson"
    with pytest.warns(EmptyReferenceWarning):  # nothing mapped: every building is written
        export_unmapped(store, s3, bucket, JOB, mapped, str(out), "geojson", attribution="(c) Agency")
    doc = json.loads(out.read_text())
    assert doc["looking_glass"]["attribution"] == "(c) Agency" and doc["looking_glass"]["job_model"] == "seg/7"
    assert sorted(f["properties"]["capture_date"] for f in doc["features"]) == \
        ["", "2021-01-01", "2023-05-05,2022-02-02,2020-01-01"]


def test_osm_source_names_each_model_as_its_own_value():
    assert osm_tags({"imagery": "city", "model": "seg/3,seg/4", "capture_date": ""}) == \
        [("source", "city;Looking Glass seg/3;Looking Glass seg/4")]
    assert osm_tags({"imagery": "", "model": ""}) == [("source", "Looking Glass")]


@pytest.mark.parametrize("source, named", [
    ("/data/atl/ortho 2024.tif", "ortho 2024.tif"),
    ("s3://imagery-bucket/kigali/a.tif,s3://imagery-bucket/kigali/b.tif", "a.tif,b.tif"),  # a mosaic list
    ("https://tiles.example.com/{z}/{x}/{y}.png?key=secret", "tiles.example.com"),
    ("http://127.0.0.1:8123/{z}/{x}/{y}.png", "default"),  # the embedded run's synthetic world
])
def test_a_job_on_the_unnamed_default_source_names_its_imagery(aws, tmp_path, capsys, monkeypatch, source, named):
    """A job on the default source (`up --imagery scene.tif`, no name) said `imagery: default` and
    `source=default;...`; the export, `jobs` and `status` name the GeoTIFF (or the provider)."""
    from conftest import run_cli

    from looking_glass.local.deployment import write_state

    record = {"imagery": "default", "imagery_source": {"source": source}, "model": "shipped:seg/4"}
    store, s3, bucket = put_job(aws, {(0, 0): "done"}, job=record)
    out = tmp_path / "b.osm"
    export_buildings(store, s3, bucket, JOB, str(out), "osm")
    text = out.read_text()
    header = json.loads(text.split("<!--", 1)[1].split("-->", 1)[0])
    assert header["imagery"] == named and "secret" not in text
    tags = {t.get("v") for t in ET.fromstring(text).iter("tag") if t.get("k") == "source"}
    assert tags == {f"{named};Looking Glass m"}
    session, _, res = aws
    state = tmp_path / "embedded.json"
    write_state(state, session.client("s3").meta.endpoint_url, res, "http://127.0.0.1:9/{z}/{x}/{y}.png")
    monkeypatch.setenv("LG_EMBEDDED_STATE", str(state))
    code, listed, _ = run_cli(capsys, "jobs")
    row = next(r for r in listed.splitlines() if r.startswith(JOB))
    assert code == 0 and named in row and "secret" not in listed and row.split()[-1] == "seg/4"
    code, shown_, _ = run_cli(capsys, "status", JOB)
    lines = {line.split()[0]: line.split(None, 1)[1] for line in shown_.splitlines()}
    assert code == 0 and lines["imagery"] == named and lines["model"] == "seg/4" and "secret" not in shown_
