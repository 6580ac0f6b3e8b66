"""The looking-glass command line: argument and AOI validation, cover output formats."""

import json
import subprocess
import sys

import pytest
from conftest import (
    SAMPLE_POLYGON,
    SPACENET_SAMPLE,  # noqa: E402
)

from looking_glass.cli.main import main


@pytest.fixture
def aoi_file(tmp_path):
    path = tmp_path / "aoi.geojson"
    path.write_text(json.dumps(SAMPLE_POLYGON))
    return path


def test_cover_formats_agree(aoi_file, capsys):
    main(["cover", str(aoi_file), "--zoom", "17", "--format", "count"])
    count = int(capsys.readouterr().out)
    main(["cover", str(aoi_file), "--zoom", "17", "--format", "xyz"])
    lines = capsys.readouterr().out.split("\n")[:-1]
    assert len(lines) == count > 0 and all(line.endswith(" 17") for line in lines)
    main(["cover", str(aoi_file), "--zoom", "17", "--format", "quadkey"])
    assert len(capsys.readouterr().out.split()) == count
    main(["cover", str(aoi_file), "--zoom", "17", "--format", "geojson"])
    assert len(json.loads(capsys.readouterr().out)["features"]) == count


def test_bad_aoi_is_refused_with_the_reason(tmp_path):
    bad = tmp_path / "bad.geojson"
    bad.write_text('{"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1]]]}')
    with pytest.raises(SystemExit) as err:
        main(["validate", str(bad)])
    assert "not closed" in str(err.value)
    with pytest.raises(SystemExit) as err:
        main(["demo", "--aoi", str(tmp_path / "missing.geojson")])
    assert "not found" in str(err.value)


@pytest.mark.parametrize("args", [["cover", "x.geojson", "--zoom", "40"], ["demo", "--workers", "0"], ["cover", "x", "--format", "png"]])
def test_bad_arguments_exit_2_with_a_message(args):
    proc = subprocess.run([sys.executable, "-m", "looking_glass.cli.main", *args], capture_output=True, text=True)
    assert proc.returncode == 2 and "error:" in proc.stderr


def test_validate_prints_tile_count(aoi_file, capsys):
    assert main(["validate", str(aoi_file)]) == 0
    assert "zoom-18 tiles" in capsys.readouterr().out


def test_estimate_counts_tiles_messages_time_and_cost(aoi_file, capsys):
    main(["cover", str(aoi_file), "--format", "count"])
    tiles = int(capsys.readouterr().out)
    main(["estimate", str(aoi_file), "--json", "--tiles-per-message", "10", "--tiles-per-second", "2", "--price-per-hour", "3.6"])
    est = json.loads(capsys.readouterr().out)
    assert est["tiles"] == tiles
    assert est["sqs_messages"] == -(-tiles // 10) and est["sqs_send_requests"] == -(-est["sqs_messages"] // 10)
    # One worker (under 20,000 tiles), 9 minutes of start-up (0.15 h) on top of the tiles' time.
    assert est["workers"] == 1
    assert est["worker_hours"] == pytest.approx(tiles / 2 / 3600 + 0.15, abs=1e-3)
    assert est["compute_usd"] == pytest.approx((tiles / 2 / 3600 + 0.15) * 3.6, abs=1e-4)
    assert est["total_usd"] == pytest.approx(est["compute_usd"] + est["requests_usd"] + est["nat_usd"], abs=2e-4)
    # Each zoom-18 tile near the equator is about 153 m on a side: 0.0234 km2.
    assert est["tiles_area_km2"] == pytest.approx(tiles * 0.0234, rel=0.01)
    main(["estimate", str(aoi_file)])
    lines = capsys.readouterr().out
    assert all(f"{part}:" in lines for part in ("compute", "requests", "NAT gateway", "total", "storage"))


def test_estimate_notes_an_aoi_over_the_job_tile_cap(aoi_file, capsys, monkeypatch):
    """validate refuses an AOI over LG_MAX_TILES_PER_JOB; estimate still prices it (exit 0) but
    says it must be split, on standard error with --json (the JSON stays parseable)."""
    main(["cover", str(aoi_file), "--format", "count"])
    tiles = int(capsys.readouterr().out)
    assert main(["estimate", str(aoi_file)]) == 0
    assert "note:" not in capsys.readouterr().out  # under the default cap: no note
    monkeypatch.setenv("LG_MAX_TILES_PER_JOB", str(tiles - 1))
    with pytest.raises(SystemExit):
        main(["validate", str(aoi_file)])
    capsys.readouterr()
    assert main(["estimate", str(aoi_file)]) == 0
    out = capsys.readouterr().out
    assert f"note: the AOI's {tiles:,} zoom-18 tiles exceed the cap of {tiles - 1:,} tiles per job" in out
    assert "split it into AOIs of at most" in out
    assert main(["estimate", str(aoi_file), "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["tiles"] == tiles and f"cap of {tiles - 1:,} tiles per job" in captured.err
    assert main(["estimate", str(aoi_file), "--zoom", "17"]) == 0  # jobs run zoom 18: no cap to compare
    assert "note:" not in capsys.readouterr().out
    monkeypatch.setenv("LG_MAX_TILES_PER_JOB", str(tiles))
    assert main(["estimate", str(aoi_file)]) == 0 and "note:" not in capsys.readouterr().out  # at the cap: fine


@pytest.mark.parametrize("option, value, message", [
    ("--tiles-per-second", "0", "must be greater than 0"),
    ("--price-per-hour", "-1", "must be at least 0"),
    ("--price-per-hour", "inf", "not a finite number"),
    ("--nat-bytes-per-tile", "-5", "must be at least 0"),
    ("--tiles-per-worker", "0", "must be at least 1"),
])
def test_estimate_rejects_bad_numbers(aoi_file, option, value, message):
    proc = subprocess.run(
        [sys.executable, "-m", "looking_glass.cli.main", "estimate", str(aoi_file), option, value],
        capture_output=True, text=True,
    )
    assert proc.returncode == 2 and message in proc.stderr and option in proc.stderr


def test_synth_data_writes_the_prepare_format(tmp_path, capsys):
    from looking_glass.datasets.prepare import load_split

    out = tmp_path / "synth"
    assert main(["synth-data", "--tiles", "48", "--out", str(out), "--seed", "5"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["written"] == 48
    splits = {c["id"]: c["split"] for c in manifest["chips"]}
    # Neighbouring tiles (same 4x4 cluster) never straddle train and validation.
    by_cluster = {}
    for c in manifest["chips"]:
        z, x, y = c["tile"]
        by_cluster.setdefault((x // 4, y // 4), set()).add(splits[c["id"]])
    assert all(len(s) == 1 for s in by_cluster.values())
    train = load_split(out, "train")
    assert train["image"].shape[1:] == (256, 256, 3)
    assert ((train["sdt"] > 0) == (train["mask"] == 1)).all()
    with pytest.raises(SystemExit) as err:  # refuses to overwrite without --overwrite
        main(["synth-data", "--tiles", "4", "--out", str(out)])
    assert "error:" in str(err.value)


def test_prepare_command_on_the_spacenet_sample(tmp_path, capsys):

    data = SPACENET_SAMPLE
    out = tmp_path / "prepared"
    code = main(["prepare", "--images", str(data / "image.tif"), "--footprints", str(data / "buildings.geojson"),
                 "--out", str(out), "--chip-size", "300", "--split-block", "2", "--max-nodata", "1.0"])
    assert code == 0 and "manifest" in capsys.readouterr().out
    assert json.loads((out / "manifest.json").read_text())["counts"]["written"] == 9
    with pytest.raises(SystemExit) as err:
        main(["prepare", "--images", str(data / "image.tif"), "--footprints", str(data / "buildings.geojson"),
              "--out", str(tmp_path / "x"), "--bands", "one"])
    assert "comma-separated band numbers" in str(err.value)


def test_train_command_validates_its_inputs(tmp_path):
    with pytest.raises(SystemExit) as err:
        main(["train", "--local", "--data", str(tmp_path / "nothing")])
    assert "error:" in str(err.value)
    with pytest.raises(SystemExit) as err:
        main(["train", "--local", "--data", str(tmp_path), "--hyperparameters", "{not json"])
    assert "not JSON" in str(err.value)


def test_evaluate_and_plot_the_shipped_model(tmp_path, capsys):
    assert main(["evaluate", "--synthetic", "8", "--seed", "11"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert set(scores) >= {"iou", "f1", "precision", "recall"} and scores["tiles"] == 8
    # The shipped model, on tiles it never saw. Issue 12's goal is >= 0.85 on 200 tiles for any seed;
    # model v3 (trained mostly on the randomised world for real imagery) measures 0.853 (seed 0, 200
    # tiles) and 0.847 here, so this checks it clearly finds buildings, not the goal itself.
    assert scores["iou"] >= 0.80
    # Buildings (SpaceNet rule, IoU >= 0.5): 0.956 on 200 tiles (seed 0), the issue-15 goal is 0.9.
    assert scores["object_f1"] >= 0.85 and scores["truth_buildings"] > 8
    out = tmp_path / "fig.png"
    assert main(["plot", "--synthetic", "2", "--out", str(out)]) == 0
    assert out.read_bytes()[:4] == b"\x89PNG"


def test_every_model_option_takes_a_folder_or_the_sidecar_and_refuses_a_corrupt_file(tmp_path, capsys):
    """evaluate/plot/demo/up --model: the model's folder or its sidecar name the model; the new
    user's 6-byte model.keras (with a real sidecar) is one error line, exit 2, before anything
    runs (no data read, no output written, no server or worker started)."""
    from looking_glass.model.segmenter import SHIPPED_MODEL

    for spec in (SHIPPED_MODEL.parent, SHIPPED_MODEL.with_suffix(".json")):
        assert main(["evaluate", "--model", str(spec), "--synthetic", "1"]) == 0
        assert json.loads(capsys.readouterr().out)["tiles"] == 1
    fake = tmp_path / "fake" / "model.keras"
    fake.parent.mkdir()
    fake.write_text("hello\n")
    fake.with_suffix(".json").write_text(SHIPPED_MODEL.with_suffix(".json").read_text())
    for argv in (["evaluate", "--model", str(fake), "--data", str(tmp_path / "no-data")],
                 ["plot", "--model", str(fake), "--synthetic", "1", "--out", str(tmp_path / "fig.png")],
                 ["demo", "--model", str(fake), "--out", str(tmp_path / "demo")],
                 ["up", "--model", str(fake), "--embedded", str(tmp_path / "state.json"), "--dir", str(tmp_path / "up")]):
        with pytest.raises(SystemExit) as err:
            main(argv)
        err_text = capsys.readouterr().err
        assert err.value.code == 2 and err_text.count("\n") == 1, (argv, err_text)
        assert err_text.startswith(f"error: --model {fake}: not a Keras model file"), (argv, err_text)
    assert not [p.name for p in tmp_path.iterdir() if p.name != "fake"]  # nothing written or started


def test_evaluate_reports_unreadable_inputs(tmp_path, capsys):
    with pytest.raises(SystemExit) as err:
        main(["evaluate", "--model", str(tmp_path / "none.keras"), "--synthetic", "1"])
    assert err.value.code == 2 and f"--model {tmp_path / 'none.keras'}: no such file or folder" in capsys.readouterr().err
    with pytest.raises(SystemExit) as err:
        main(["evaluate", "--data", str(tmp_path), "--synthetic", "1"])
    assert err.value.code == 2  # argparse: --data and --synthetic are exclusive
