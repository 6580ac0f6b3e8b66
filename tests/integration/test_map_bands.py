"""The map of a GeoTIFF job draws the pixels its workers read: the bands registered with its
source (kept in the job record's ``imagery_source``), through the workers' own reader and
stretch, on a stack (an ``s3://`` image read with the deployment's session) as on the embedded
run; a job from before that record falls back to the default bands."""

from __future__ import annotations

import io
import json
import os
import re
import sys
import uuid
from decimal import Decimal
from pathlib import Path

import numpy as np
import rasterio
from conftest import run_cli
from rasterio.transform import from_origin
from test_results_cli import env as env  # noqa: F401 - the fixture

from looking_glass.grid import TILE_SIZE, quadkey
from looking_glass.imagery.geotiff import GeoTiffTiles
from looking_glass.pipeline.store import RUNNING, TileResult

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "imagery"))
from test_mosaic import PX, N, W, X, Y  # noqa: E402

BANDS = {1: 210, 2: 120, 3: 40}  # band -> value: red-ish with the default bands, blue with 3,2,1


def coloured_tif(path: Path) -> Path:
    """A uint8 3-band GeoTIFF covering tile (X, Y) whose bands have the values of BANDS (each
    with a faint column pattern, so no tile is one colour)."""
    ramp = (np.arange(TILE_SIZE) % 5)[None, :].repeat(TILE_SIZE, 0)
    data = np.stack([(value + ramp).astype(np.uint8) for value in BANDS.values()])
    profile = dict(driver="GTiff", width=TILE_SIZE, height=TILE_SIZE, count=3, dtype="uint8", crs="EPSG:3857",
                   transform=from_origin(W, N, PX, PX), nodata=0)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return path


def job_on(env, source: str, recorded: dict | None) -> str:  # noqa: F811
    """A job on a named GeoTIFF source as the enumerator and a worker leave it."""
    job_id = uuid.uuid4().hex[:24]
    attrs = {"status": RUNNING, "name": f"bands-{job_id[:6]}", "tiles_total": 1, "zoom": 18, "warnings": [], "imagery": "scene"}
    if recorded is not None:
        attrs["imagery_source"] = recorded
    env["store"].create_job(job_id, attrs)
    tile = TileResult(x=X, y=Y, z=18, quadkey=quadkey(X, Y, 18), status="done", building_area_m2=Decimal(1),
                      building_pixels=0)
    env["store"].record_tiles(job_id, [tile], {"imagery": source, "model_id": "m"})
    return job_id


def map_pixel(capsys, env, job_id: str, out: Path) -> np.ndarray:  # noqa: F811
    from PIL import Image

    code, stdout, err = run_cli(capsys, "map", job_id, "--stack", env["stack"], "--out", str(out))
    assert code == 0, err
    assert "imagery tiles in" in stdout
    with Image.open(io.BytesIO((out / "map_tiles" / "18" / str(X) / f"{Y}.webp").read_bytes())) as img:
        return np.asarray(img.convert("RGB"), dtype=float).mean(axis=(0, 1))


def test_a_stack_geotiff_job_is_mapped_with_its_registered_bands(env, capsys, tmp_path):  # noqa: F811
    s3, bucket = env["session"].client("s3"), env["res"].trigger_bucket
    s3.upload_file(str(coloured_tif(tmp_path / "scene.tif")), bucket, "imagery/scene.tif")
    source = f"s3://{bucket}/imagery/scene.tif"

    swapped = map_pixel(capsys, env, job_on(env, source, {"source": source, "bands": "3,2,1"}), tmp_path / "a")
    with GeoTiffTiles(source, bands=(3, 2, 1), session=env["session"]) as image:  # what the workers read
        worker = image.fetch(X, Y, 18).image.astype(float).mean(axis=(0, 1))
    assert np.allclose(swapped, worker, atol=6), (swapped, worker)  # WebP at quality 80
    assert swapped[2] > swapped[1] > swapped[0]  # band 3 (40) red, band 1 (210) blue

    # a job recorded before the definition was kept: the default bands (1, 2, 3), as it always was
    default = map_pixel(capsys, env, job_on(env, source, None), tmp_path / "b")
    assert default[0] > default[1] > default[2]


def test_the_map_credits_the_sources_attribution_or_name_never_a_local_tile_server(env, capsys, tmp_path, tile_server):  # noqa: F811
    """The embedded run's synthetic world is served on 127.0.0.1:PORT: the page credits what it is
    (the registry's attribution, recorded with the job), a named source without one its name, a
    stack source its configured attribution; the tile server's URL appears nowhere."""
    from looking_glass.local.deployment import write_state
    from looking_glass.local.embedded import SYNTHETIC_ATTRIBUTION
    from looking_glass.runtime.imagery_sources import ImageryRegistry, single_source

    default = single_source("default", tile_server.url_template, attribution=SYNTHETIC_ATTRIBUTION)
    city = single_source("city", tile_server.url_template)
    write_state(env["state"], os.environ["AWS_ENDPOINT_URL"], env["res"], tile_server.url_template,
                ImageryRegistry({"default": default, "city": city}))

    def credited(name: str, recorded: dict | None, *stack: str) -> str:
        job_id = job_on(env, tile_server.url_template, recorded)
        env["store"].update_job(job_id, {"imagery": name})
        out = tmp_path / job_id
        code, _, err = run_cli(capsys, "map", job_id, "--out", str(out), *stack)
        assert code == 0, err
        page = (out / "map.html").read_text()
        assert "127.0.0.1" not in page.split("const options", 1)[1].split("const ramp", 1)[0]
        return json.loads(re.search(r"const options = (\{.*?\});\n", page).group(1))["imagery"]["attribution"]

    assert credited("default", default.to_json()) == SYNTHETIC_ATTRIBUTION
    assert credited("default", None) == SYNTHETIC_ATTRIBUTION  # a job from before: the registry's entry
    assert credited("city", city.to_json()) == "imagery &#x27;city&#x27;"  # HTML-escaped: imagery 'city'
    assert credited("esri", {"source": tile_server.url_template, "attribution": "Esri & partners"},
                    "--stack", env["stack"]) == "Esri &amp; partners"


def test_a_stack_job_from_before_its_record_is_mapped_with_the_registered_bands(env, capsys, tmp_path):  # noqa: F811
    """No ``imagery_source`` in the record (enumerated before it was kept): the source registered
    under the job's name in the stack's ImagerySources output gives the bands, the default's too."""
    from conftest import create_output_stack
    from test_deployment import stack_outputs

    from looking_glass.runtime import resources
    from looking_glass.runtime.imagery_sources import ImageryRegistry, single_source

    s3, bucket = env["session"].client("s3"), env["res"].trigger_bucket
    s3.upload_file(str(coloured_tif(tmp_path / "scene.tif")), bucket, "imagery/old.tif")
    source = f"s3://{bucket}/imagery/old.tif"
    registry = ImageryRegistry({"scene": single_source("scene", geotiff=source, bands=(3, 2, 1))}, "scene")
    env["stack"] = f"Lg{uuid.uuid4().hex[:8]}"
    storage, inference = stack_outputs(env["res"])
    create_output_stack(f"{env['stack']}Storage", storage)
    create_output_stack(f"{env['stack']}Inference", {**inference, resources.OUTPUT_IMAGERY_SOURCES: registry.to_json()})
    swapped = map_pixel(capsys, env, job_on(env, source, None), tmp_path / "c")
    assert swapped[2] > swapped[1] > swapped[0]
