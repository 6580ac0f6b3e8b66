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
