"""``looking-glass evaluate --polygons PRED --truth TRUTH [--iou T]``: object scores as JSON."""

import json

import pytest

from looking_glass.cli.main import main

# Two 20 m x 20 m buildings near Kigali (1e-4 deg ~ 11 m).
A = [[30.0600, -1.9500], [30.0602, -1.9500], [30.0602, -1.9498], [30.0600, -1.9498], [30.0600, -1.9500]]
B = [[30.0610, -1.9500], [30.0612, -1.9500], [30.0612, -1.9498], [30.0610, -1.9498], [30.0610, -1.9500]]
# B shifted by three quarters of its width: IoU 1/7 with B.
B_SHIFTED = [[x + 0.00015, y] for x, y in B]


def _write(path, rings):
    doc = {"type": "FeatureCollection",
           "features": [{"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [r]}}
                        for r in rings]}
    path.write_text(json.dumps(doc))
    return str(path)


def test_one_match_one_miss_scored_by_the_spacenet_rule(tmp_path, capsys):
    pred = _write(tmp_path / "pred.geojson", [A, B_SHIFTED])
    truth = _write(tmp_path / "truth.geojson", [A, B])
    assert main(["evaluate", "--polygons", pred, "--truth", truth]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["tp"], out["fp"], out["fn"]) == (1, 1, 1)
    assert out["precision"] == pytest.approx(0.5) and out["recall"] == pytest.approx(0.5)
    assert out["f1"] == pytest.approx(0.5)


def test_a_low_threshold_counts_the_shifted_building(tmp_path, capsys):
    pred = _write(tmp_path / "pred.geojson", [A, B_SHIFTED])
    truth = _write(tmp_path / "truth.geojson", [A, B])
    assert main(["evaluate", "--polygons", pred, "--truth", truth, "--iou", "0.1"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["tp"], out["fp"], out["fn"]) == (2, 0, 0)


@pytest.mark.parametrize("argv, message", [
    (["--polygons", "{pred}"], "--polygons needs --truth"),
    (["--polygons", "{tmp}/missing.geojson", "--truth", "{pred}"], "no such file"),
    (["--synthetic", "2", "--truth", "{pred}"], "--truth goes with --polygons"),
])
def test_bad_arguments_are_one_clear_error(tmp_path, capsys, argv, message):
    pred = _write(tmp_path / "pred.geojson", [A])
    argv = [a.format(pred=pred, tmp=tmp_path) for a in argv]
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", *argv])
    assert exc.value.code not in (0, None)
    assert message in str(exc.value) + capsys.readouterr().err


@pytest.mark.parametrize("iou", ["0", "1.5", "x"])
def test_bad_iou_is_refused(tmp_path, capsys, iou):
    pred = _write(tmp_path / "pred.geojson", [A])
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", "--polygons", pred, "--truth", pred, "--iou", iou])
    assert exc.value.code == 2


# A truth building ~1 km east of everything predicted (0.01 deg of longitude near the equator).
FAR = [[x + 0.01, y] for x, y in A]


def test_truth_outside_the_predictions_is_counted_and_warned_about(tmp_path, capsys):
    pred = _write(tmp_path / "pred.geojson", [A, B])
    truth = _write(tmp_path / "truth.geojson", [A, B, FAR])
    assert main(["evaluate", "--polygons", pred, "--truth", truth]) == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert (out["tp"], out["fp"], out["fn"], out["truth_outside_predictions"]) == (2, 0, 1, 1)
    (line,) = captured.err.strip().splitlines()
    assert line.startswith(f"warning: {truth}: 1 of 3 truth buildings lie outside the extent") and "--extent" in line


def test_extent_scores_only_the_buildings_inside_it(tmp_path, capsys):
    pred = _write(tmp_path / "pred.geojson", [A, B])
    truth = _write(tmp_path / "truth.geojson", [A, B, FAR])
    # An AOI around A only (B is some 60 m east of it): B is left out of both files, FAR of the truth.
    aoi = _write(tmp_path / "aoi.geojson", [[[30.0599, -1.9501], [30.0605, -1.9501], [30.0605, -1.9497],
                                             [30.0599, -1.9497], [30.0599, -1.9501]]])
    assert main(["evaluate", "--polygons", pred, "--truth", truth, "--extent", aoi]) == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert (out["tp"], out["fp"], out["fn"], out["predicted"], out["truth"]) == (1, 0, 0, 1, 1)
    assert out["outside_extent"] == {"predicted": 1, "truth": 2} and out["extent"] == aoi
    assert captured.err == ""


@pytest.mark.parametrize("argv, message", [
    (["--extent", "{tmp}/missing.geojson"], "--extent {tmp}/missing.geojson: no such file"),
    (["--extent", "{empty}"], "--extent {empty}: no polygon in it"),
    (["--extent", "{tmp}/bad.geojson"], "{tmp}/bad.geojson: not GeoJSON"),
])
def test_bad_extents_are_one_error_naming_the_file(tmp_path, capsys, argv, message):
    pred = _write(tmp_path / "pred.geojson", [A])
    empty = _write(tmp_path / "empty.geojson", [])
    (tmp_path / "bad.geojson").write_text("{nope")
    argv = [a.format(tmp=tmp_path, empty=empty) for a in argv]
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", "--polygons", pred, "--truth", pred, *argv])
    assert exc.value.code == 2
    assert message.format(tmp=tmp_path, empty=empty) in str(exc.value) + capsys.readouterr().err


def test_extent_goes_with_polygons(tmp_path, capsys):
    aoi = _write(tmp_path / "aoi.geojson", [A])
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", "--synthetic", "2", "--extent", aoi])
    assert exc.value.code == 2 and "--extent goes with --polygons" in str(exc.value) + capsys.readouterr().err
