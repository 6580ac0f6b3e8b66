"""``looking-glass demo --imagery/--truth/--model`` end to end: a real moto server, the real
handler, real worker processes with a tiny real model, on the SpaceNet Atlanta GeoTIFF read
directly and served as XYZ tiles by the local tile server; and bad inputs refused with exit code
2 before anything starts."""

from __future__ import annotations

import json
from pathlib import Path

import mercantile
import numpy as np
import pytest
import shapely
from conftest import SPACENET_SAMPLE, model_copy, run_cli
from pyproj import Transformer

from looking_glass.cli.main import main
from looking_glass.grid import pixel_row_areas_m2

pytestmark = pytest.mark.e2e

IMAGE = str(SPACENET_SAMPLE / "image.tif")
FOOTPRINTS = str(SPACENET_SAMPLE / "buildings.geojson")
TILES = 22  # zoom-18 tiles the image's footprint covers


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A small random DeepLab V3+ saved as a model file with its sidecar (--model PATH)."""
    import keras

    from looking_glass.model.deeplab import ModelConfig, build_deeplabv3plus

    keras.utils.set_random_seed(7)
    config = ModelConfig(alpha=0.35, aspp_filters=8, decoder_filters=8)
    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    build_deeplabv3plus(config).save(path)
    sidecar = {"model_id": "tiny-e2e", "version": "0", "trained": False, "description": "random tiny model",
               "threshold": 0.5, "config": config.to_dict()}
    path.with_suffix(".json").write_text(json.dumps(sidecar))
    return str(path)


def demo(out, *argv) -> tuple[dict, dict]:
    """Run ``looking-glass demo`` in process; (summary.json, results.geojson features by quadkey)."""
    assert main(["demo", "--out", str(out), "--workers", "2", "--timeout", "240", *argv]) == 0
    summary = json.loads((out / "summary.json").read_text())
    features = json.loads((out / "results.geojson").read_text())["features"]
    return summary, {f["properties"]["quadkey"]: f["properties"] for f in features}


@pytest.fixture(scope="module")
def geotiff_truth(tmp_path_factory, tiny_model):
    out = tmp_path_factory.mktemp("geotiff-truth")
    return (out, *demo(out, "--imagery", IMAGE, "--truth", FOOTPRINTS, "--model", tiny_model))


@pytest.fixture(scope="module")
def xyz_truth(tmp_path_factory, tiny_model, geotiff_truth):
    """The same image served as XYZ tiles (what ``looking-glass serve-tiles`` serves), on the AOI
    the GeoTIFF run wrote (the image's footprint)."""
    from looking_glass.imagery.geotiff import GeoTiffTiles
    from looking_glass.local.tileserver import SyntheticTileServer

    out = tmp_path_factory.mktemp("xyz-truth")
    aoi = geotiff_truth[0] / "aoi.geojson"
    with GeoTiffTiles(IMAGE) as image, SyntheticTileServer(tile_source=lambda z, x, y: image.png(x, y, z)) as tiles:
        return (out, *demo(out, "--imagery", tiles.url_template, "--aoi", str(aoi), "--truth", FOOTPRINTS,
                           "--model", tiny_model))


def exact_truth_m2(quadkeys) -> dict[str, float]:
    """Independent reference: footprint area inside each tile, from shapely intersections in a
    local Lambert azimuthal equal-area projection (no rasterising, no web-mercator pixels)."""
    doc = json.loads((SPACENET_SAMPLE / "buildings.geojson").read_text())
    to_lonlat = Transformer.from_crs("EPSG:32616", "EPSG:4326", always_xy=True)
    polys = shapely.union_all([
        shapely.transform(shapely.geometry.shape(f["geometry"]),
                          lambda c: np.column_stack(to_lonlat.transform(c[:, 0], c[:, 1])))
        for f in doc["features"]
    ])
    lon0, lat0 = polys.centroid.x, polys.centroid.y
    to_laea = Transformer.from_crs("EPSG:4326", f"+proj=laea +lat_0={lat0} +lon_0={lon0} +datum=WGS84", always_xy=True)
    out = {}
    for qk in quadkeys:
        b = mercantile.bounds(mercantile.quadkey_to_tile(qk))
        part = polys.intersection(shapely.box(b.west, b.south, b.east, b.north)).segmentize(1e-5)
        out[qk] = shapely.transform(part, lambda c: np.column_stack(to_laea.transform(c[:, 0], c[:, 1]))).area
    return out


def test_a_geotiff_without_aoi_runs_on_its_footprint_and_every_tile_is_done(geotiff_truth):
    out, summary, tiles = geotiff_truth
    assert summary["status"] == "COMPLETE"
    assert summary["tiles_total"] == summary["tiles_done"] == summary["result_items"] == len(tiles) == TILES
    assert summary["imagery"].startswith("GeoTIFF ") and summary["imagery"].endswith("image.tif")
    assert summary["model"]["model_id"] == "tiny-e2e"
    assert sum(t["building_area_m2"] for t in tiles.values()) == pytest.approx(summary["building_area_m2"], abs=0.01)
    assert set(summary["outputs"]) == {"summary.json", "results.geojson", "map.png", "aoi.geojson"}
    assert (out / "map.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_truth_areas_match_an_independent_computation(geotiff_truth):
    _, summary, tiles = geotiff_truth
    exact = exact_truth_m2(tiles)
    for qk, props in tiles.items():
        assert props["truth_area_m2"] == pytest.approx(exact[qk], rel=0.03, abs=3.0), qk
    assert summary["truth_area_m2"] == pytest.approx(sum(exact.values()), rel=0.005)
    assert summary["truth_area_m2"] == pytest.approx(8459, rel=0.01)  # the README's 43 footprints
    area, truth = summary["building_area_m2"], summary["truth_area_m2"]
    assert summary["area_error_pct"] == pytest.approx(100 * (area - truth) / truth, abs=0.01)


def test_pixel_scores_come_from_the_stored_masks_and_the_rasterised_footprints(geotiff_truth):
    _, summary, tiles = geotiff_truth
    c = summary["pixel_counts"]
    tp, fp, fn = c["tp"], c["fp"], c["fn"]
    # One pixel's area varies by < 0.01% over these tiles: pixel counts x that area are the areas.
    px = float(np.mean([pixel_row_areas_m2(*mercantile.quadkey_to_tile(q)).mean() for q in tiles]))
    assert (tp + fn) * px == pytest.approx(summary["truth_area_m2"], rel=0.001)
    assert (tp + fp) * px == pytest.approx(summary["building_area_m2"], rel=0.001)
    assert summary["pixel_iou"] == pytest.approx(tp / (tp + fp + fn) if tp + fp + fn else 1.0, abs=1e-4)
    if tp + fp:
        assert summary["pixel_precision"] == pytest.approx(tp / (tp + fp), abs=1e-4)
    assert summary["pixel_recall"] == pytest.approx(tp / (tp + fn), abs=1e-4)


def test_object_scores_count_the_buildings_outlined_from_both(geotiff_truth):
    _, summary, _ = geotiff_truth
    c = summary["object_counts"]
    assert c["tp"] + c["fp"] == c["predicted"] and c["tp"] + c["fn"] == c["truth"]
    # The 43 footprints, rasterised: a few touch (one building in the mask) or are under 5 m2.
    assert 35 <= c["truth"] <= 43
    if c["predicted"] + c["truth"]:
        assert summary["object_f1"] == pytest.approx(2 * c["tp"] / (c["predicted"] + c["truth"]), abs=1e-4)


def test_the_same_image_as_xyz_tiles_gives_the_same_tiles_areas_and_truth(geotiff_truth, xyz_truth):
    _, geo_summary, geo_tiles = geotiff_truth
    _, summary, tiles = xyz_truth
    assert summary["imagery"].startswith("XYZ tiles http://127.0.0.1:")
    assert summary["status"] == "COMPLETE" and summary["tiles_done"] == TILES
    assert set(tiles) == set(geo_tiles)
    for qk, props in tiles.items():
        assert props["truth_area_m2"] == geo_tiles[qk]["truth_area_m2"]
        # The same pixels reach the model (PNG of the same read): the same masks up to float noise.
        assert props["building_area_m2"] == pytest.approx(geo_tiles[qk]["building_area_m2"], rel=0.002, abs=2.0)
    assert summary["truth_area_m2"] == geo_summary["truth_area_m2"]


def test_a_geotiff_on_s3_without_truth_gives_the_same_areas_and_no_reference(
    tmp_path, moto_endpoint, tiny_model, geotiff_truth
):
    """The image on S3 (the test's moto server plays the user's AWS): copied into the embedded
    S3 and read there by the workers through GDAL's /vsis3/."""
    import boto3

    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="lg-e2e-imagery")
    s3.upload_file(IMAGE, "lg-e2e-imagery", "atlanta/image.tif")
    summary, tiles = demo(tmp_path, "--imagery", "s3://lg-e2e-imagery/atlanta/image.tif", "--model", tiny_model)
    assert summary["imagery"] == "GeoTIFF s3://lg-e2e-imagery/atlanta/image.tif"
    assert summary["tiles_done"] == TILES
    assert summary["truth_area_m2"] is None and summary["area_error_pct"] is None
    assert not any(k.startswith("pixel_") for k in summary) and "truth" not in summary
    assert not any("truth_area_m2" in props for props in tiles.values())
    geo_tiles = geotiff_truth[2]
    for qk, props in tiles.items():
        assert props["building_area_m2"] == pytest.approx(geo_tiles[qk]["building_area_m2"], rel=0.002, abs=2.0)


def test_up_serves_the_geotiff_and_gives_its_workers_the_image_and_the_model(tmp_path, tiny_model):
    import argparse
    import threading
    import time

    import requests

    from looking_glass.local.deployment import run_embedded
    from looking_glass.local.inputs import add_run_options, validated_inputs
    from looking_glass.pipeline import launchers

    parser = argparse.ArgumentParser()
    add_run_options(parser)
    inputs = validated_inputs(parser.parse_args(["--imagery", IMAGE, "--model", tiny_model]))
    states, stop = [], threading.Event()
    thread = threading.Thread(
        target=run_embedded, args=(tmp_path / "state.json", tmp_path / "run"),
        kwargs={"ready": states.append, "stop_event": stop, "worker_env": inputs.model_env(), "imagery": inputs.imagery},
        daemon=True,
    )
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not states and thread.is_alive() and time.monotonic() < deadline:
            stop.wait(0.2)
        template = states[0]["tile_url_template"]
        inside = requests.get(template.format(z=18, x=69556, y=105034), timeout=10)
        assert inside.status_code == 200 and inside.content[:8] == b"\x89PNG\r\n\x1a\n"
        assert requests.get(template.format(z=18, x=1, y=1), timeout=10).status_code == 404
        env = launchers._local_launcher.environment
        assert env["LG_IMAGERY_GEOTIFF"] == str(SPACENET_SAMPLE.resolve() / "image.tif")
        assert env["LG_TILE_URL_TEMPLATE"] == "" and env["LG_MODEL_PATH"] == tiny_model
    finally:
        stop.set()
        thread.join(60)
    assert not thread.is_alive()


# ---- bad inputs: one line, exit code 2, nothing started -------------------------------------
@pytest.fixture
def nothing_starts(monkeypatch):
    """Fail the test if an embedded stack (moto server, tile server, workers) is started."""
    from looking_glass.local.embedded import EmbeddedStack

    def refuse(self):
        raise AssertionError("the embedded stack was started")

    monkeypatch.setattr(EmbeddedStack, "start", refuse)


def not_a_geotiff(tmp_path):
    p = tmp_path / "photo.tif"
    p.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return str(p)


def no_polygons(tmp_path):
    p = tmp_path / "points.geojson"
    p.write_text(json.dumps({"type": "Feature", "geometry": {"type": "Point", "coordinates": [-84.48, 33.64]}}))
    return str(p)


def metres_without_crs(tmp_path):
    """The sample's UTM footprints with their crs member dropped: metres read as degrees."""
    doc = json.loads(Path(FOOTPRINTS).read_text())
    del doc["crs"]
    p = tmp_path / "metres.geojson"
    p.write_text(json.dumps(doc))
    return str(p)


def model_without_sidecar(tmp_path):
    """A real Keras file (the shipped model's) without its sidecar."""
    from looking_glass.model.segmenter import SHIPPED_MODEL

    p = tmp_path / "model.keras"
    p.write_bytes(SHIPPED_MODEL.read_bytes())
    return str(p)


def corrupt_model(tmp_path):
    """Seven bytes that are not a Keras archive, with the shipped model's sidecar beside them."""
    p = model_copy(tmp_path / "corrupt", "1")
    p.write_bytes(b"weights")
    return str(p)


@pytest.mark.parametrize(
    "command, argv, message",
    [
        ("demo", ["--imagery", "missing/image.tif"], "--imagery missing/image.tif: no such file"),
        ("demo", ["--imagery", not_a_geotiff], "not a GeoTIFF"),
        ("demo", ["--imagery", "http://tiles.example/{z}/{x}/{row}.png", "--aoi", FOOTPRINTS], "unknown placeholder {row}"),
        ("demo", ["--imagery", "s3://looking-glass-e2e-none/image.tif"], "s3://looking-glass-e2e-none/image.tif: no such S3 object"),
        ("demo", ["--imagery", IMAGE, "--truth", "missing.geojson"], "--truth missing.geojson: no such file"),
        ("demo", ["--imagery", IMAGE, "--truth", IMAGE], "not GeoJSON"),
        ("demo", ["--imagery", IMAGE, "--truth", no_polygons], "no usable building polygon in it"),
        ("demo", ["--imagery", IMAGE, "--truth", metres_without_crs], "are not longitude/latitude degrees, yet the file "
         "declares no CRS"),
        ("demo", ["--model", "missing.keras"], "--model missing.keras: no such file"),
        ("demo", ["--model", model_without_sidecar], "no sidecar"),
        ("demo", ["--model", corrupt_model], "not a Keras model file"),
        ("up", ["--imagery", "missing/image.tif"], "--imagery missing/image.tif: no such file"),
        ("up", ["--model", model_without_sidecar], "no sidecar"),
        ("up", ["--model", corrupt_model], "not a Keras model file"),
    ],
)
def test_bad_inputs_are_one_line_and_exit_2_before_anything_starts(
    capsys, tmp_path, moto_endpoint, nothing_starts, command, argv, message
):
    argv = [a(tmp_path) if callable(a) else a for a in argv]
    extra = ["--out", str(tmp_path / "out")] if command == "demo" else ["--embedded", str(tmp_path / "state.json")]
    code, _, err = run_cli(capsys, command, *extra, *argv)
    assert code == 2
    assert message in err and err.startswith("error: ") and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists() and not (tmp_path / "state.json").exists()


def test_demo_says_in_one_line_what_it_skipped_of_the_truth_before_it_starts(capsys, tmp_path, nothing_starts):
    # datasets.feature_tally's rule: a Point and a feature without geometry among the real footprints
    # were skipped without a word before.
    doc = json.loads(Path(FOOTPRINTS).read_text())
    doc["features"] += [{"type": "Feature", "properties": {}, "geometry": {"type": "Point", "coordinates": [-84.48, 33.64]}},
                        {"type": "Feature", "properties": {}, "geometry": None}]
    truth = tmp_path / "truth.geojson"
    truth.write_text(json.dumps(doc))
    with pytest.raises(AssertionError, match="the embedded stack was started"):
        main(["demo", "--imagery", IMAGE, "--truth", str(truth), "--out", str(tmp_path / "out")])
    (line,) = [w for w in capsys.readouterr().err.splitlines() if w.startswith("warning: ")]
    assert line == (f"warning: --truth {truth}: 2 feature(s) skipped (1 Point, 1 without geometry), the rest used (43): "
                    "feature 43: a Point, not a polygon; feature 44: no geometry")
