"""The inputs of demo/up (looking_glass.local.inputs): each bad --imagery/--bands/--model/--truth
value is one clear line, checked by the worker's, prepare's and the segmenter's own readers."""

import argparse
import json
import re

import pytest
from conftest import SPACENET_SAMPLE

from looking_glass.local.inputs import (
    EXIT_BAD_INPUT,
    InputError,
    add_run_options,
    inputs_or_exit,
    validate_imagery,
    validate_model,
    validated_inputs,
)

IMAGE = str(SPACENET_SAMPLE / "image.tif")
FOOTPRINTS = str(SPACENET_SAMPLE / "buildings.geojson")
TEMPLATE = "http://127.0.0.1:9/{z}/{x}/{y}.png"


def demo_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    parser.add_argument("--aoi")
    add_run_options(parser, truth=True)
    return parser


def args(*argv):
    return demo_parser().parse_args(list(argv))


def model_files(tmp_path, sidecar=None):
    """A copy of the shipped model (a real Keras file) as ``m.keras``, with ``sidecar`` beside it."""
    import shutil

    from looking_glass.model.segmenter import SHIPPED_MODEL

    model = tmp_path / "m.keras"
    shutil.copy(SHIPPED_MODEL, model)
    if sidecar is not None:
        (tmp_path / "m.json").write_text(sidecar if isinstance(sidecar, str) else json.dumps(sidecar))
    return str(model)


def test_no_options_is_the_synthetic_world_and_the_shipped_model():
    inputs = validated_inputs(args())
    assert inputs.imagery is None and inputs.model == "" and inputs.truth is None and inputs.aoi_bytes is None
    assert inputs.worker_env() == {}


def test_a_geotiff_without_aoi_runs_on_its_footprint():
    from looking_glass.tiling.aoi import parse_aoi
    from looking_glass.tiling.cover import count_tiles, tile_runs

    inputs = validated_inputs(args("--imagery", IMAGE, "--truth", FOOTPRINTS))
    assert inputs.imagery.kind == "geotiff" and inputs.imagery.source == str(SPACENET_SAMPLE.resolve() / "image.tif")
    assert inputs.worker_env() == {"LG_TILE_URL_TEMPLATE": "", "LG_IMAGERY_GEOTIFF": inputs.imagery.source}
    aoi = parse_aoi(inputs.aoi_bytes)
    west, south, east, north = aoi.geometry.bounds
    assert -84.482 < west < east < -84.476 and 33.636 < south < north < 33.641  # the image, 450 m square
    assert count_tiles(tile_runs(aoi.geometry)) == 22
    assert inputs.aoi_filename == "image-footprint.geojson"
    assert inputs.truth.count == 43


def small_aoi(tmp_path) -> str:
    aoi = tmp_path / "a.geojson"
    aoi.write_text(json.dumps({"type": "Polygon", "coordinates": [[[0, 0], [0.001, 0], [0.001, 0.001], [0, 0]]]}))
    return str(aoi)


def test_a_template_runs_on_the_given_aoi(tmp_path, tile_server):
    template = tile_server.url_template
    inputs = validated_inputs(args("--imagery", template, "--aoi", small_aoi(tmp_path)))
    assert inputs.imagery.kind == "xyz"
    assert inputs.worker_env() == {"LG_TILE_URL_TEMPLATE": template, "LG_IMAGERY_GEOTIFF": ""}
    assert inputs.aoi_filename == "a.geojson"


def test_a_tile_server_that_cannot_be_reached_or_refuses_access_is_refused(tmp_path, fault_tiles):
    with pytest.raises(InputError, match=re.escape("--imagery http://127.0.0.1:9/{z}/{x}/{y}.png: cannot reach the tile server: GET http://127.0.0.1:9/18/131072/131071.png failed")):
        validated_inputs(args("--imagery", TEMPLATE, "--aoi", small_aoi(tmp_path)))
    fault_tiles.set_fault(18, 131072, 131071, "server_error", status=403)  # the AOI's first tile
    with pytest.raises(InputError, match="refused access to http://127.0.0.1:[0-9]+/18/131072/131071.png \\(HTTP 403\\)"):
        validated_inputs(args("--imagery", fault_tiles.url_template, "--aoi", small_aoi(tmp_path)))
    fault_tiles.set_fault(18, 131072, 131071, "not_found")  # a tile without imagery is fine
    assert validated_inputs(args("--imagery", fault_tiles.url_template, "--aoi", small_aoi(tmp_path))).imagery


def test_bands_and_model_reach_the_worker_settings(tmp_path):
    from looking_glass.model.segmenter import SHIPPED_MODEL

    model = model_files(tmp_path, json.loads(SHIPPED_MODEL.with_suffix(".json").read_text()))
    inputs = validated_inputs(args("--imagery", IMAGE, "--bands", "1", "--model", model))
    env = inputs.worker_env()
    assert env["LG_IMAGERY_BANDS"] == "1,1,1" and env["LG_MODEL_PATH"] == str((tmp_path / "m.keras").resolve())
    for spec in (str(tmp_path / "m.json"), str(tmp_path)):  # its sidecar, or its folder: the same model
        assert validated_inputs(args("--model", spec)).model == str((tmp_path / "m.keras").resolve())


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--imagery", "/nonexistent/image.tif"], "no such file"),
        (["--imagery", "/nonexistent/image.png"], "does not end in .tif or .tiff"),
        (["--imagery", "ftp://host/image.tif"], "is not an http(s) URL"),
        (["--imagery", "http://tiles.example/{z}/{x}.png", "--aoi", "AOI"], "lacks {y}"),
        (["--imagery", "http://tiles.example/{z}/{x}/{y}/{q}.png", "--aoi", "AOI"], "unknown placeholder {q}"),
        (["--imagery", "http://tiles.example/{z}/{x}/{y}.png"], "needs --aoi"),
        (["--imagery", "http://tiles.example/{z}/{x}/{y}.png", "--bands", "1", "--aoi", "AOI"], "--bands applies to a GeoTIFF --imagery only"),
        (["--imagery", IMAGE, "--bands", "2"], "band index 2 out of range"),
        (["--imagery", IMAGE, "--bands", "1,2"], "1 band (grey) or 3 bands"),
        (["--bands", "1"], "applies to a GeoTIFF"),
        (["--truth", "FOOTPRINTS"], "--truth needs --imagery"),
        (["--imagery", IMAGE, "--truth", "/nonexistent/fp.geojson"], "no such file"),
        (["--imagery", IMAGE, "--truth", IMAGE], "not GeoJSON"),
        (["--imagery", IMAGE, "--truth", "EMPTY"], "empty.geojson: no building polygons in it"),
        (["--model", "/nonexistent/m.keras"], "no such file or folder"),
        (["--imagery", "s3://bucket-only"], "is not an s3://bucket/key address"),
    ],
)
def test_bad_values_are_one_line_naming_the_problem(tmp_path, argv, message):
    aoi = tmp_path / "aoi.geojson"
    aoi.write_text(json.dumps({"type": "Polygon", "coordinates": [[[0, 0], [0.001, 0], [0.001, 0.001], [0, 0]]]}))
    empty = tmp_path / "empty.geojson"
    empty.write_text('{"type": "FeatureCollection", "features": []}')
    named = {"AOI": str(aoi), "FOOTPRINTS": FOOTPRINTS, "EMPTY": str(empty)}
    argv = [named.get(a, a) for a in argv]
    with pytest.raises(InputError, match=re.escape(message)) as info:
        validated_inputs(args(*argv))
    assert "\n" not in str(info.value)


def test_a_file_that_is_not_a_geotiff_is_refused(tmp_path):
    fake = tmp_path / "fake.tif"
    fake.write_text("hello")
    with pytest.raises(InputError, match="not a GeoTIFF"):
        validate_imagery(str(fake))


def test_an_unreadable_s3_object_is_refused(moto_endpoint):
    import boto3

    session = boto3.session.Session()
    session.client("s3").create_bucket(Bucket="lg-inputs-test")
    with pytest.raises(InputError, match="no such S3 object"):
        validate_imagery("s3://lg-inputs-test/missing.tif", session=session)
    with pytest.raises(InputError, match="no such S3 object"):
        validate_imagery("s3://no-such-bucket-here/image.tif", session=session)


@pytest.mark.parametrize(
    "sidecar, message",
    [(None, "no sidecar .*m.json"), ("{not json", "not readable JSON"), ({"model_id": "m"}, "lacks version")],
)
def test_a_model_needs_a_readable_sidecar(tmp_path, sidecar, message):
    with pytest.raises(InputError, match=message):
        validate_model(model_files(tmp_path, sidecar))


def test_a_corrupt_model_or_a_folder_without_one_is_refused_before_anything_starts(tmp_path):
    """demo/up --model: the new user's 6-byte model.keras (with a real sidecar), a folder with no
    model, a sidecar without its model: each one InputError line (exit 2), as every command
    checks a model path (looking_glass.model.model_file)."""
    from looking_glass.model.segmenter import SHIPPED_MODEL

    fake = tmp_path / "fake" / "model.keras"
    fake.parent.mkdir()
    fake.write_text("hello\n")
    fake.with_suffix(".json").write_text(SHIPPED_MODEL.with_suffix(".json").read_text())
    (tmp_path / "empty").mkdir()
    (tmp_path / "lonely.json").write_text("{}")
    for spec, message in ((fake, "not a Keras model file"), (fake.with_suffix(".json"), "not a Keras model file"),
                          (tmp_path / "empty", "holds 0 .keras model files"),
                          (tmp_path / "lonely.json", "that is a sidecar; its model")):
        with pytest.raises(InputError, match=message) as err:
            validate_model(str(spec))
        assert str(err.value).startswith(f"--model {spec}") and "\n" not in str(err.value)


def test_inputs_or_exit_prints_one_line_and_exits_2(capsys):
    with pytest.raises(SystemExit) as info:
        inputs_or_exit(args("--imagery", "/nonexistent/image.tif"))
    assert info.value.code == EXIT_BAD_INPUT == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --imagery /nonexistent/image.tif: no such file") and err.count("\n") == 1


def test_up_has_no_truth_option_and_keeps_an_existing_model_option():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="given")
    add_run_options(parser)
    parsed = parser.parse_args(["--imagery", IMAGE])
    assert parsed.model == "given" and not hasattr(parsed, "truth")
