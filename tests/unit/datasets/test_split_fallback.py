"""The split falls back to one chip a block when whole blocks cannot give both splits (one small
image), and says so once; with enough blocks it keeps them."""

from __future__ import annotations

import json

from conftest import SPACENET_SAMPLE, run_cli

from looking_glass.datasets.split import block_split, fit_split_block, fitting_split_block


def _grid(rows: int, cols: int, source: str = "image.tif"):
    return [(source, r, c) for r in range(rows) for c in range(cols)]


def test_a_single_block_falls_back_to_per_chip():
    cells = _grid(4, 4)  # one 4 x 4 block: all of it in one split
    assert len({block_split(*cell, split_block=4, val_fraction=0.2) for cell in cells}) == 1
    block, note = fit_split_block(cells, 4, 0.2, 0)
    assert block == 1 and len(note) == 1 and "--split-block 4" in note[0] and "split per chip" in note[0]
    assert {block_split(*cell, split_block=1, val_fraction=0.2) for cell in cells} == {"train", "validation"}


def test_enough_blocks_keep_the_block_size():
    cells = _grid(40, 40)  # 100 blocks of 4 x 4
    assert fit_split_block(cells, 4, 0.2, 0) == (4, [])
    # Only one split wanted (val_fraction 0 or 1), an empty input, or already per chip: unchanged.
    assert fitting_split_block(_grid(4, 4), 4, 0.0) == 4 and fitting_split_block(_grid(4, 4), 4, 1.0) == 4
    assert fitting_split_block([], 4, 0.2) == 4 and fitting_split_block(_grid(2, 2), 1, 0.2) == 1


def test_prepare_with_defaults_on_the_readme_sample_has_both_splits(tmp_path, capsys):
    """The README's sample with prepare's defaults: train and validation chips, the fallback
    recorded in the manifest and warned about once, naming the option as the CLI spells it;
    evaluate --data then has validation chips to read (reading them is all it needs here)."""
    from looking_glass.training.evaluate import prepared_eval_set

    out = tmp_path / "chips"
    code, stdout, stderr = run_cli(capsys, "prepare", "--images", str(SPACENET_SAMPLE / "image.tif"),
                                   "--footprints", str(SPACENET_SAMPLE / "buildings.geojson"), "--out", str(out))
    manifest = json.loads((out / "manifest.json").read_text())
    assert code == 0 and manifest["counts"]["train"] > 0 and manifest["counts"]["validation"] > 0
    assert manifest["parameters"]["split_block"] == 1
    # The rule recorded and the summary line are the per-chip rule applied, naming the block size
    # asked for (the manifest said "blocks of 1 x 1 chips ... never straddle train and validation").
    rule = manifest["split_rule"]
    assert rule.startswith("Split per chip (blocks of 4 x 4 chips, --split-block 4, were asked for") and "never straddle" not in rule
    assert "Neighbouring chips may be in train and validation" in rule and "val_fraction=0.2" in rule
    summary = "split per chip (too few chips for blocks of 4 x 4)"
    assert manifest["split_summary"] == summary and f"), {summary}; manifest: " in stdout.splitlines()[-1]
    for chip in manifest["chips"]:  # the rule in words is the one the chips were split by
        assert block_split("image.tif", chip["row"], chip["col"], split_block=1, val_fraction=0.2) == chip["split"]
    warnings = [line for line in (stdout + stderr).splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "--split-block 4" in warnings[0] and "split_block" not in warnings[0].replace("--split-block", "")
    images = prepared_eval_set(out)[0]
    assert len(images) == manifest["counts"]["validation"]


def test_prepare_with_enough_blocks_records_the_block_rule(tmp_path, capsys):
    """128 px chips of the sample make enough 2 x 2 blocks for both splits: the block rule is
    recorded and said, and the chips follow it."""
    out = tmp_path / "chips"
    code, stdout, stderr = run_cli(capsys, "prepare", "--images", str(SPACENET_SAMPLE / "image.tif"),
                                   "--footprints", str(SPACENET_SAMPLE / "buildings.geojson"), "--out", str(out),
                                   "--chip-size", "128", "--split-block", "2")
    assert code == 0, stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["parameters"]["split_block"] == 2 and "split per chip" not in stdout + stderr
    assert manifest["split_rule"].startswith("Chips are grouped into blocks of 2 x 2 chips")
    assert manifest["split_summary"] == "split in blocks of 2 x 2 chips"
    assert "), split in blocks of 2 x 2 chips; manifest: " in stdout.splitlines()[-1]
    for chip in manifest["chips"]:
        assert block_split("image.tif", chip["row"], chip["col"], split_block=2, val_fraction=0.2) == chip["split"]


def test_evaluate_data_without_validation_chips_is_one_error_before_the_model_loads(tmp_path, capsys):
    """evaluate --data scores the validation chips: a dataset without any (--val-fraction 0) is
    one error line, exit 2, read before the model (and TensorFlow) is loaded."""
    import sys

    from looking_glass.model.segmenter import SHIPPED_MODEL

    out = tmp_path / "chips"
    assert run_cli(capsys, "prepare", "--images", str(SPACENET_SAMPLE / "image.tif"), "--footprints",
                   str(SPACENET_SAMPLE / "buildings.geojson"), "--out", str(out), "--val-fraction", "0")[0] == 0
    loaded = "tensorflow" in sys.modules
    # a real model path: its file checks pass without TensorFlow, so the dataset is what is refused
    code, _, err = run_cli(capsys, "evaluate", "--data", str(out), "--model", str(SHIPPED_MODEL))
    assert code == 2 and err.count("\n") == 1 and "has no validation chips" in err and "cannot load model" not in err
    assert ("tensorflow" in sys.modules) == loaded
