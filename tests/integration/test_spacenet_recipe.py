"""The recipe of docs/training.md "Training at scale from a SpaceNet-style dataset on S3", run
against moto: the real SpaceNet sample cut into four images with per-image GeoJSON, laid out and
named as SpaceNet 2 publishes them under S3 prefixes; ``prepare`` straight from the prefixes
(paired by id, images read in place, 2 jobs), then ``train --stack --init shipped`` uploads the
chips and the starting model and starts the training state machine (moto runs nothing: what was
sent is checked)."""

from __future__ import annotations

import json
import uuid

import boto3
import rasterio
import shapely
from affine import Affine
from conftest import SPACENET_SAMPLE
from rasterio.windows import Window
from test_train_stack import executions, keys, training_stack  # noqa: F401 -- the fixture

from looking_glass.cli.main import main
from looking_glass.training.contract import INIT_PREFIX, TRAIN_PREFIX, VALIDATION_PREFIX

AOI = "AOI_9_Atlanta"
ROOT = f"spacenet/SN2_buildings/train/{AOI}"


def spacenet_layout(bucket: str, tmp_path) -> int:
    """Upload the sample as 4 quadrant images + their buildings; returns the footprints kept."""
    s3 = boto3.client("s3")
    doc = json.loads((SPACENET_SAMPLE / "buildings.geojson").read_text())
    kept = 0
    with rasterio.open(SPACENET_SAMPLE / "image.tif") as src:
        h, w = src.height // 2, src.width // 2
        for i, (r, c) in enumerate(((0, 0), (0, w), (h, 0), (h, w)), start=1):
            win = Window(c, r, w, h)
            profile = {**src.profile, "width": w, "height": h, "transform": src.transform * Affine.translation(c, r)}
            tif = tmp_path / f"SN2_buildings_train_{AOI}_PS-RGB_img{i}.tif"
            with rasterio.open(tif, "w", **profile) as dst:
                dst.write(src.read(window=win))
            box = shapely.box(*rasterio.windows.bounds(win, src.transform))
            features = [f for f in doc["features"] if shapely.geometry.shape(f["geometry"]).intersects(box)]
            kept += len(features)
            labels = tmp_path / f"SN2_buildings_train_{AOI}_geojson_buildings_img{i}.geojson"
            labels.write_text(json.dumps({**doc, "features": features}))
            s3.upload_file(str(tif), bucket, f"{ROOT}/PS-RGB/{tif.name}")
            s3.upload_file(str(labels), bucket, f"{ROOT}/geojson_buildings/{labels.name}")
    return kept


def test_prepare_from_spacenet_prefixes_then_train_on_the_stack(training_stack, tmp_path, capsys):  # noqa: F811
    name, training_bucket, machine = training_stack
    bucket = f"spacenet-{uuid.uuid4().hex[:8]}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    assert spacenet_layout(bucket, tmp_path) > 40
    chips = tmp_path / "chips"
    assert main(["prepare", "--images", f"s3://{bucket}/{ROOT}/PS-RGB/", "--footprints", f"s3://{bucket}/{ROOT}/geojson_buildings/",
                 "--mode", "tiles", "--jobs", "2", "--max-nodata", "0.8", "--val-fraction", "0.3", "--split-block", "1",
                 "--out", str(chips)]) == 0
    manifest = json.loads((chips / "manifest.json").read_text())
    pairs = {s["path"].rsplit("_", 1)[1]: s["labels"][0].rsplit("_", 1)[1] for s in manifest["sources"]["images"]}
    assert pairs == {f"img{i}.tif": f"img{i}.geojson" for i in (1, 2, 3, 4)}
    assert manifest["counts"]["train"] > 0 and manifest["counts"]["validation"] > 0
    ids = [c["id"] for c in manifest["chips"]]
    assert len(ids) == len(set(ids)) and all(c["source"].startswith(f"s3://{bucket}/{ROOT}/PS-RGB/") for c in manifest["chips"])
    building = sum(c["building_pixels"] for c in manifest["chips"])
    assert building > 10_000
    capsys.readouterr()

    assert main(["train", "--stack", name, "--data", str(chips), "--init", "shipped", "--name", "spacenet-atlanta"]) == 0
    uploaded = keys(training_bucket)
    assert {f"{TRAIN_PREFIX}manifest.json", f"{VALIDATION_PREFIX}manifest.json"} <= uploaded
    assert {k.rsplit(".", 1)[1] for k in uploaded if k.startswith(INIT_PREFIX)} >= {"keras", "json"}  # the shipped model
    assert any(k.startswith(f"{TRAIN_PREFIX}train/shard-") for k in uploaded)
    (execution,) = executions(machine)
    sent = json.loads(execution["input"])
    assert sent["init"] is True and sent["hyperparameters"]["init_source"].startswith("shipped")
    # The chips on S3 are the chips prepared here.
    body = boto3.client("s3").get_object(Bucket=training_bucket, Key=f"{TRAIN_PREFIX}manifest.json")["Body"].read()
    assert json.loads(body)["counts"]["train"] == manifest["counts"]["train"]
