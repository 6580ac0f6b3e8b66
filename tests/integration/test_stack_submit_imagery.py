"""`submit --stack` with the stack's imagery registry (its ``ImagerySources`` output) against moto:
the CLI computes the very job id the enumerator computes (the source's definition included, so a
name registered again for other images is a new job), refuses an unknown name with close ones
before uploading anything, and without an AOI submits the footprint of an ``s3://`` source."""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path

import pytest
from conftest import create_output_stack, drain, enumerator_env_with, run_cli
from test_deployment import stack_outputs
from test_results_cli import X0, Y0, block_aoi, env  # noqa: F401 - a fixture

from looking_glass.local.embedded import LocalLambdaContext, load_enumerator_handler
from looking_glass.runtime import resources
from looking_glass.runtime.imagery_sources import ImageryRegistry, ImagerySource, encode_sources, single_source

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "imagery"))
from test_mosaic import TILE_SIZE, X, Y, write_tif  # noqa: E402

DEFAULT = single_source("default", "https://tiles.example/{z}/{x}/{y}.png")
OSM = ImagerySource("osm", "https://osm.example/{z}/{x}/{y}.png")


def deploy(env, registry: ImageryRegistry) -> str:  # noqa: F811
    """A deployment (CloudFormation outputs in moto) of the test's resources with ``registry``
    as its ImagerySources output; the enumerator's environment as the stacks set it."""
    name = f"Lg{uuid.uuid4().hex[:8]}"
    storage, inference = stack_outputs(env["res"])
    create_output_stack(f"{name}Storage", storage)
    create_output_stack(f"{name}Inference", {**inference, resources.OUTPUT_IMAGERY_SOURCES: registry.to_json()})
    return name


@pytest.fixture
def deployment(env, monkeypatch):  # noqa: F811
    """An S3 GeoTIFF 'scene' (two tiles wide) registered beside a template and the default."""
    s3 = env["session"].client("s3")
    bucket = f"imagery-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    tif = write_tif(env["tmp"] / "scene.tif", 100, 0, 2 * TILE_SIZE)
    s3.upload_file(str(tif), bucket, "kigali/scene.tif")
    scene = ImagerySource("scene", f"s3://{bucket}/kigali/scene.tif", "2021-01-01")
    registry = ImageryRegistry({"scene": scene, "osm": OSM, "default": DEFAULT}, "default")
    with enumerator_env_with(monkeypatch, env["res"]):
        yield {**env, "registry": registry, "name": deploy(env, registry), "bucket": bucket}


def enumerate_uploads(dep, registry: ImageryRegistry, monkeypatch) -> None:
    """Hand the uploads' S3 events to the real handler, configured with ``registry`` as the
    stacks configure it (stacks.environment.enumerator_environment)."""
    named = {n: s for n, s in registry.sources.items() if n != registry.default}
    monkeypatch.setenv("LG_IMAGERY_SOURCES", encode_sources(named))
    monkeypatch.setenv("LG_DEFAULT_IMAGERY_SOURCE", json.dumps(registry.sources[registry.default].to_json()))
    sqs = dep["session"].client("sqs")
    url = sqs.get_queue_url(QueueName=dep["res"].trigger_bucket.removesuffix("-trigger") + "-aoi-events")["QueueUrl"]
    handler = load_enumerator_handler()
    for event in (json.loads(m["Body"]) for m in drain(sqs, url, wait=1)):
        if "Records" in event:
            handler(event, LocalLambdaContext(aws_request_id="t"))


def uploaded(dep) -> list[str]:
    listed = dep["session"].client("s3").list_objects_v2(Bucket=dep["res"].trigger_bucket)
    return sorted(o["Key"] for o in listed.get("Contents", []))


def test_submit_on_a_stack_names_the_job_the_enumerator_makes(deployment, capsys, monkeypatch):
    dep, aoi = deployment, deployment["tmp"] / "block.geojson"
    aoi.write_bytes(block_aoi(X, Y, 2, 1))  # the tiles of 'scene' (it is checked to meet them)
    ids = {}
    for imagery in ("scene", None):
        code, out, err = run_cli(capsys, "submit", str(aoi), "--stack", dep["name"], *(["--imagery", imagery] if imagery else []))
        assert code == 0, err
        ids[imagery] = out.strip()
        enumerate_uploads(dep, dep["registry"], monkeypatch)
        capsys.readouterr()  # the handler's log lines
        job = dep["store"].get_job(ids[imagery])  # the enumerator made the job submit named
        assert job is not None and job["imagery_digest"] == dep["registry"].digest(imagery)
    assert ids["scene"] != ids[None]
    # the very same inputs again: the job that holds them, nothing uploaded
    code, out, err = run_cli(capsys, "submit", str(aoi), "--stack", dep["name"], "--imagery", "scene")
    assert code == 0 and out.strip() == ids["scene"] and "already holds the results" in err

    # 'scene' registered again for other images: a new job, made by the enumerator under that id
    moved = ImagerySource("scene", dep["registry"].sources["scene"].source.replace("scene.tif", "scene2.tif"))
    dep["session"].client("s3").upload_file(str(write_tif(dep["tmp"] / "scene2.tif", 90, 0, 2 * TILE_SIZE)),
                                            dep["bucket"], "kigali/scene2.tif")  # submit reads its footprint
    again = ImageryRegistry({**dep["registry"].sources, "scene": moved}, "default")
    code, out, err = run_cli(capsys, "submit", str(aoi), "--stack", deploy(dep, again), "--imagery", "scene")
    assert code == 0 and out.strip() != ids["scene"] and "already holds" not in err
    enumerate_uploads(dep, again, monkeypatch)
    assert dep["store"].get_job(out.strip())["imagery_source"] == {"source": moved.source}


def test_an_unknown_name_on_a_stack_is_refused_before_upload_with_close_names(deployment, capsys):
    aoi = deployment["tmp"] / "block.geojson"
    aoi.write_bytes(block_aoi(X0, Y0, 1, 1))
    code, _, err = run_cli(capsys, "submit", str(aoi), "--stack", deployment["name"], "--imagery", "scen")
    assert code == 2
    assert ("unknown imagery source 'scen': not registered with this deployment (registered: default, osm, scene); "
            "did you mean 'scene'?") in err
    code, _, err = run_cli(capsys, "submit", "--stack", deployment["name"], "--imagery", "sceen")  # no AOI either
    assert code == 2 and "did you mean 'scene'?" in err
    assert uploaded(deployment) == []


def test_an_aoi_outside_the_sources_footprint_is_refused_before_upload(deployment, capsys):
    """A swapped lon/lat AOI would end COMPLETE with every tile 'no imagery': refused, with the
    source, both bounding boxes and the hint; the template source has no footprint to check."""
    import shapely

    from looking_glass.grid import tile_bounds

    west, south, east, north = tile_bounds(X, Y, 18)
    box = shapely.geometry.box(west + 1e-5, south + 1e-5, east - 1e-5, north - 1e-5)
    swapped = {"type": "Polygon", "coordinates": [[[lat, lon] for lon, lat in box.exterior.coords]]}
    aoi = deployment["tmp"] / "swapped.geojson"
    aoi.write_text(json.dumps(swapped))
    code, _, err = run_cli(capsys, "submit", str(aoi), "--stack", deployment["name"], "--imagery", "scene")
    assert code == 2
    assert f"does not intersect the footprint of imagery 'scene' (s3://{deployment['bucket']}/kigali/scene.tif)" in err
    assert f"bbox ({south + 1e-5:.6f}, {west + 1e-5:.6f}" in err and "with its coordinates swapped it would" in err
    far = deployment["tmp"] / "far.geojson"
    far.write_bytes(block_aoi(X0, Y0, 1, 1))  # Kigali: no swap brings it onto the scene
    code, _, err = run_cli(capsys, "submit", str(far), "--stack", deployment["name"], "--imagery", "scene")
    assert code == 2 and "does not intersect" in err and "swapped" not in err
    assert uploaded(deployment) == []
    code, _, err = run_cli(capsys, "submit", str(far), "--stack", deployment["name"], "--imagery", "osm")
    assert code == 0, err  # a URL template has no extent to check


def test_submit_without_an_aoi_on_a_stack_uses_the_s3_sources_footprint(deployment, capsys):
    code, out, err = run_cli(capsys, "submit", "--stack", deployment["name"], "--imagery", "scene")
    assert code == 0, err
    assert "'scene-footprint' (2 zoom-18 tiles)" in err  # the image covers exactly two tiles
    assert uploaded(deployment) == [f"{resources.TRIGGER_PREFIX}scene-footprint.geojson"]
    code, _, err = run_cli(capsys, "submit", "--stack", deployment["name"], "--imagery", "osm")
    assert code == 2 and "'osm' is a URL template, which has no extent: give an AOI file" in err


def test_a_registry_output_that_does_not_parse_is_one_error(env, capsys):  # noqa: F811
    name = f"Lg{uuid.uuid4().hex[:8]}"
    storage, inference = stack_outputs(env["res"])
    create_output_stack(f"{name}Storage", storage)
    create_output_stack(f"{name}Inference", {**inference, resources.OUTPUT_IMAGERY_SOURCES: '{"default": "d"}'})
    code, _, err = run_cli(capsys, "submit", "--stack", name, "--imagery", "scene")
    assert code != 0
    assert f"deployment {name!r}: stack output ImagerySources: must be an object with 'default' and 'sources'" in err
