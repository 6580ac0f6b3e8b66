"""Fine-tuning (``train --init``): the new hyperparameters, the init channel's checks, random crops,
the losses and learning-rate schedules, and one tiny fine-tune through run_local (64 px chips, a
MobileNetV2 x0.35 model with 8 filters)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from test_train import SIZE, TINY, dataset  # noqa: F401 -- the module's tiny dataset fixture

from looking_glass.training import data, hyperparameters, loop
from looking_glass.training.errors import HyperparameterError
from looking_glass.training.init import InitModel, InitModelError, load_init_model, load_sidecar, read_init, stage_init
from looking_glass.training.local import prepare_root, run_local

MODEL_KEYS = {k: TINY[k] for k in ("alpha", "aspp_filters", "decoder_filters", "low_level_filters", "input_size")}


def _save_model(folder: Path, head: str = "binary", size: int = SIZE, sidecar_size: int | None = None,
                sidecar_head: str | None = None, name: str = "start") -> Path:
    """A tiny untrained model ``folder/name.keras`` and its sidecar (whose config may lie)."""
    from looking_glass.model.deeplab import ModelConfig, build_deeplabv3plus

    folder.mkdir(parents=True, exist_ok=True)
    cfg = ModelConfig(**{**MODEL_KEYS, "input_size": size, "head": head})
    path = folder / f"{name}.keras"
    build_deeplabv3plus(cfg).save(path)
    config = {**cfg.to_dict(), "input_size": sidecar_size or size, "head": sidecar_head or head}
    path.with_suffix(".json").write_text(json.dumps({"model_id": "tiny-start", "version": "7", "trained": True,
                                                     "threshold": 0.5, "config": config,
                                                     "validation": {"val_iou": 0.5}}))
    return path


@pytest.fixture(scope="module")
def start_model(tmp_path_factory) -> Path:
    return _save_model(tmp_path_factory.mktemp("start"))


# --- hyperparameters ------------------------------------------------------------------------------


def test_without_init_the_defaults_are_todays():
    hp = hyperparameters.parse_hyperparameters({})
    assert (hp["loss"], hp["lr_schedule"], hp["freeze_epochs"], hp["patience"]) == ("bce", "constant", 0, 0)
    assert (hp["restore_best"], hp["random_crops"], hp["samples_per_epoch"], hp["augment_mode"]) == (False, False, None, None)
    assert (hp["epochs"], hp["batch_size"], hp["learning_rate"]) == (10, 16, 1e-3)


def test_with_init_small_data_defaults_and_the_models_config():
    start = {**MODEL_KEYS, "backbone": "mobilenetv2", "head": "binary", "imagenet": False, "output_stride": 16}
    hp = hyperparameters.parse_hyperparameters({"alpha": "1.0", "epochs": "2"}, init_config=start)
    for key, value in hyperparameters.FINETUNE_DEFAULTS.items():
        if key not in ("epochs", "freeze_epochs"):
            assert hp[key] == value, key
    assert hp["epochs"] == 2 and hp["freeze_epochs"] == 1  # a default warm-up never takes every epoch
    assert hp["config"].alpha == 0.35 and hp["overridden"] == ["alpha"]
    assert "overridden" not in hyperparameters.public_hyperparameters(hp)


@pytest.mark.parametrize("key", ["head", "input_size"])
def test_init_with_another_head_or_input_size_is_refused(key):
    start = {**MODEL_KEYS, "head": "binary"}
    with pytest.raises(HyperparameterError, match=f"'{key}'.*init model"):
        hyperparameters.parse_hyperparameters({key: "sdt" if key == "head" else "128"}, init_config=start)


@pytest.mark.parametrize("raw, key", [
    ({"loss": "dice"}, "loss"),
    ({"lr_schedule": "step"}, "lr_schedule"),
    ({"freeze_epochs": "-1"}, "freeze_epochs"),
    ({"freeze_epochs": "10", "epochs": "10"}, "freeze_epochs"),
    ({"patience": "x"}, "patience"),
    ({"restore_best": "maybe"}, "restore_best"),
    ({"random_crops": "2"}, "random_crops"),
    ({"samples_per_epoch": "0"}, "samples_per_epoch"),
    ({"augment_mode": "wild"}, "augment_mode"),
    ({"min_lr_ratio": "1.5"}, "min_lr_ratio"),
    ({"init_source": ""}, "init_source"),
])
def test_bad_new_hyperparameters_name_the_key(raw, key):
    with pytest.raises(HyperparameterError, match=key):
        hyperparameters.parse_hyperparameters(raw)


def test_the_table_lists_the_finetune_defaults():
    table = hyperparameters.hyperparameter_table()
    assert "lr_schedule" in table and "Fine-tuning" in table and "freeze_epochs=3" in table


def test_learning_rate_schedules():
    hp = {"learning_rate": 1.0, "lr_schedule": "cosine", "freeze_epochs": 2, "epochs": 12, "min_lr_ratio": 0.1}
    rates = [loop.epoch_learning_rate(hp, e) for e in range(12)]
    assert rates[:3] == [1.0, 1.0, 1.0] and rates[-1] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(rates, rates[1:]))
    assert loop.epoch_learning_rate({**hp, "lr_schedule": "linear"}, 7) == pytest.approx(0.1 + 0.9 * (1 - 5 / 9))
    assert {loop.epoch_learning_rate({**hp, "lr_schedule": "constant"}, e) for e in range(12)} == {1.0}


# --- losses -----------------------------------------------------------------------------------------


def test_losses_prefer_the_right_prediction():
    from looking_glass.training.losses import binary_loss, lovasz_hinge_loss, soft_dice_loss

    truth = np.zeros((2, 16, 16, 1), np.float32)
    truth[:, 4:10, 4:10] = 1
    good = np.where(truth > 0, 0.95, 0.05).astype(np.float32)
    bad = np.where(truth > 0, 0.05, 0.95).astype(np.float32)
    for fn in (lovasz_hinge_loss, soft_dice_loss, binary_loss("bce_dice"), binary_loss("lovasz"), binary_loss("bce")):
        g, b = np.asarray(fn(truth, good)), np.asarray(fn(truth, bad))
        assert g.shape == (2,) and np.all(g < b), fn
    assert float(np.asarray(soft_dice_loss(truth, truth))[0]) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="unknown loss"):
        binary_loss("focal")


# --- random crops -------------------------------------------------------------------------------------


def _grid_chips(ids):
    n, s = len(ids), 8
    images = np.zeros((n, s, s, 3), np.uint8)
    for i in range(n):
        images[i] = i + 1
    targets = (images[..., 0] % 2).astype(np.uint8)
    src = data.Source("train", Path("."), "shards", [])
    return data.Chips(images, targets, np.array(ids), src, n)


def test_neighbours_from_tile_and_native_ids():
    chips = _grid_chips(["a_18_10_20", "a_18_11_20", "a_18_10_21", "a_18_11_21", "b_18_11_20", "x_r000_c000",
                         "x_r000_c001", "odd"])
    nb = chips.neighbours
    assert nb[0].tolist() == [1, 2, 3]  # right (x+1), lower (y+1), lower-right
    assert nb[1].tolist() == [-1, 3, -1]
    assert nb[4].tolist() == [-1, -1, -1]  # another image
    assert nb[5].tolist() == [6, -1, -1] and nb[7].tolist() == [-1, -1, -1]


def test_random_crops_stitch_neighbours_and_stay_in_the_data():
    chips = _grid_chips(["a_18_10_20", "a_18_11_20", "a_18_10_21", "a_18_11_21"])
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(40):
        image, target = data.random_crop(chips, 0, rng)
        assert image.shape == (8, 8, 3) and target.shape == (8, 8)
        values = set(np.unique(image[..., 0]).tolist())
        assert values <= {1, 2, 3, 4}
        assert np.array_equal(target, image[..., 0] % 2)  # the target moved with the image
        seen |= values
    assert seen == {1, 2, 3, 4}
    alone, _ = data.random_crop(chips, 3, rng)  # no neighbours: the chip itself
    assert np.all(alone == 4)


def test_samples_per_epoch_and_crops_are_deterministic(dataset):  # noqa: F811
    hp = hyperparameters.parse_hyperparameters({**TINY, "samples_per_epoch": "10", "random_crops": "true",
                                                "augment_mode": "full"})
    train = data.load_chips(data.resolve_channel(dataset, "train", "train", True), "binary")
    _, steps = data.make_dataset(train, hp, 0)
    assert steps == 10 // TINY["batch_size"]
    a, b = data.epoch_batch(train, hp, 3, 1), data.epoch_batch(train, hp, 3, 1)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[0].shape == (4, SIZE, SIZE, 3)


# --- the init model -----------------------------------------------------------------------------------


def test_stage_init_refuses_missing_corrupt_and_sidecarless_models(tmp_path, start_model):
    with pytest.raises(InitModelError, match="does not exist"):
        stage_init(str(tmp_path / "nope.keras"), tmp_path / "ch")
    corrupt = tmp_path / "corrupt.keras"
    corrupt.write_bytes(b"not a model")
    corrupt.with_suffix(".json").write_text(start_model.with_suffix(".json").read_text())
    with pytest.raises(InitModelError, match="corrupt"):
        stage_init(str(corrupt), tmp_path / "ch")
    lonely = tmp_path / "lonely" / "m.keras"
    lonely.parent.mkdir()
    shutil.copy(start_model, lonely)
    with pytest.raises(InitModelError, match="no sidecar"):
        stage_init(str(lonely), tmp_path / "ch")
    with pytest.raises(InitModelError, match="empty"):
        (tmp_path / "emptydir").mkdir()
        stage_init(str(tmp_path / "emptydir"), tmp_path / "ch")
    assert isinstance(InitModelError("x"), ValueError)  # the CLI reports it as a bad input


def test_stage_init_from_a_file_a_folder_and_an_archive(tmp_path, start_model):
    import tarfile

    staged, source = stage_init(str(start_model), tmp_path / "a")
    assert staged.path == tmp_path / "a" / "start.keras" and source == str(start_model)
    staged, _ = stage_init(str(start_model.parent), tmp_path / "b")
    assert staged.sidecar["model_id"] == "tiny-start"
    staged, source = stage_init(str(start_model.with_suffix(".json")), tmp_path / "s")  # its sidecar: the model
    assert staged.path == tmp_path / "s" / "start.keras" and source == str(start_model)
    archive = tmp_path / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(start_model, arcname="model.keras")
        tar.add(start_model.with_suffix(".json"), arcname="model.json")
    staged, _ = stage_init(str(archive), tmp_path / "c")
    assert staged.path == tmp_path / "c" / "model.keras" and not (tmp_path / "c" / "extracted").exists()
    assert read_init(tmp_path / "c").sidecar["version"] == "7"  # the channel the job reads
    assert read_init(tmp_path / "missing") is None


def test_stage_init_from_s3(tmp_path, start_model, moto_endpoint):
    import boto3

    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="init-models")
    s3.upload_file(str(start_model), "init-models", "m/v7/model.keras")
    s3.upload_file(str(start_model.with_suffix(".json")), "init-models", "m/v7/model.json")
    staged, source = stage_init("s3://init-models/m/v7/model.keras", tmp_path / "ch", s3=s3)
    assert source == "s3://init-models/m/v7/model.keras" and staged.sidecar["model_id"] == "tiny-start"
    with pytest.raises(InitModelError, match="cannot fetch"):
        stage_init("s3://init-models/m/v8/model.keras", tmp_path / "ch2", s3=s3)


def test_an_incompatible_init_model_is_one_clear_error(tmp_path):
    from looking_glass.model.deeplab import ModelConfig

    # The model file's check reads the archive's config.json, so the mismatch is refused when the
    # init model is read, before TensorFlow loads it (load_init_model's own check is the second line).
    liar = _save_model(tmp_path / "h", head="sdt", sidecar_head="binary")
    with pytest.raises(InitModelError, match="not the binary head"):
        load_sidecar(liar)
    small = _save_model(tmp_path / "s", size=SIZE, sidecar_size=96)
    with pytest.raises(InitModelError, match="input_size 96"):
        load_sidecar(small)
    for path, config in ((liar, {"head": "binary"}), (small, {"input_size": 96})):  # the loaded model's check
        sidecar = json.loads(path.with_suffix(".json").read_text())
        with pytest.raises(InitModelError, match="not the binary head" if "head" in config else "input_size 96"):
            load_init_model(InitModel(path, sidecar), ModelConfig(**{**MODEL_KEYS, **config}))


def test_the_kept_epoch_line_says_last_only_when_it_is():
    from looking_glass.training.job import kept_epoch_line

    assert kept_epoch_line(2, 0.341819, 2) == "the model is epoch 2's, the last and best (val_iou 0.341819)"
    assert kept_epoch_line(1, 0.3, 3) == "the model is epoch 1's (best val_iou 0.300000), not the last epoch's (epoch 3)"


def test_the_encoder_is_frozen_and_unfrozen_again(start_model):
    import keras

    model = keras.saving.load_model(start_model, compile=False)
    everything = len(model.trainable_weights)
    loop.set_encoder_frozen(model, True)
    frozen = len(model.trainable_weights)
    assert 0 < frozen < everything
    assert all(not layer.trainable for layer in loop.encoder_layers(model))
    loop.set_encoder_frozen(model, False)  # Keras' model.trainable = True alone leaves the encoder frozen
    assert len(model.trainable_weights) == everything
    assert all(layer.trainable for layer in loop.encoder_layers(model))


# --- a tiny fine-tune -----------------------------------------------------------------------------------


def test_fine_tune_through_run_local(tmp_path, dataset, start_model):  # noqa: F811
    lines: list[str] = []
    root = tmp_path / "root"
    hp = {"epochs": 3, "freeze_epochs": 1, "samples_per_epoch": 8, "batch_size": 4, "patience": 1}
    code = run_local(dataset, root, hp, init=str(start_model), echo=lines.append)
    assert code == 0, "\n".join(lines[-30:])
    text = "\n".join(lines)
    assert "fine-tuning" in text and "encoder frozen" in text
    assert "threshold: the init model" not in text  # parent and default both 0.5: nothing to say
    # Two fits (frozen warm-up, then all layers): the note on the tensorboard package once, not twice.
    from looking_glass.training.tensorboard import tensorboard_installed

    assert text.count("the tensorboard package is not installed") == (0 if tensorboard_installed() else 1)
    meta = json.loads((root / "model" / "model.json").read_text())
    assert meta["parent"]["model_id"] == "tiny-start" and meta["parent"]["version"] == "7"
    assert meta["parent"]["source"] == str(start_model)
    assert meta["model_id"] == "tiny-start-finetuned" and meta["config"]["input_size"] == SIZE
    training = meta["training"]
    assert training["hyperparameters"]["loss"] == "bce_dice" and training["hyperparameters"]["random_crops"] is True
    best = training["best_epoch"]
    assert training["model_epoch"] == best and meta["validation"]["epoch"] == best
    last = training["metrics"][-1]["epoch"]
    assert ("not the last epoch's" in text) == (best != last)  # the log says which epoch was kept
    assert meta["validation"]["val_iou"] == max(h["val_iou"] for h in training["metrics"])
    if training["stopped_early_after_epoch"]:
        assert "early stopping" in text
    # The model written loads and its weights are the best epoch's.
    from looking_glass.model.segmenter import Segmenter

    seg = Segmenter.load(str(root / "model" / "model.keras"))
    assert seg.info.model_id == "tiny-start-finetuned"
    # After the frozen warm-up the encoder learnt too, and the model is saved with it trainable.
    import keras

    start = keras.saving.load_model(start_model, compile=False)
    tuned = keras.saving.load_model(root / "model" / "model.keras", compile=False)
    assert len(tuned.trainable_weights) == len(start.trainable_weights)
    moved = [layer.name for layer in loop.encoder_layers(start) if layer.weights and not all(
        np.array_equal(a, b) for a, b in zip(layer.get_weights(), tuned.get_layer(layer.name).get_weights()))]
    assert ("Conv1" in moved) == (training["model_epoch"] > 1)  # epoch 1 is the frozen one


def test_fine_tune_with_chips_of_another_size_fails_clearly(tmp_path, dataset):  # noqa: F811
    other = _save_model(tmp_path / "big", size=96)
    lines: list[str] = []
    code = run_local(dataset, tmp_path / "root", {"epochs": 1}, init=str(other), echo=lines.append)
    assert code == 1
    failure = (tmp_path / "root" / "output" / "failure").read_text()
    assert "init model" in failure and "96" in failure


def test_prepare_root_stages_and_removes_the_init_channel(tmp_path, dataset, start_model):  # noqa: F811
    root = prepare_root(dataset, tmp_path / "root", {}, init=str(start_model))
    assert (root / "input" / "data" / "init" / "start.keras").is_file()
    assert json.loads((root / "input" / "config" / "hyperparameters.json").read_text())["init_source"] == str(start_model)
    prepare_root(dataset, root, {})
    assert not (root / "input" / "data" / "init").exists()
    with pytest.raises(ValueError, match="does not exist"):
        prepare_root(dataset, root, {}, init=str(tmp_path / "missing.keras"))


# --- train --stack --init: the contract ------------------------------------------------------------


def test_stack_contract_uploads_the_init_model_and_asks_for_the_channel(tmp_path, start_model, moto_endpoint):
    import boto3

    from looking_glass.training import contract

    assert json.loads(contract.execution_input({"epochs": "2"}, init=True)) == {"hyperparameters": {"epochs": "2"},
                                                                               "init": True}
    assert contract.execution_input({}) == "{}"
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="training-init")
    s3.put_object(Bucket="training-init", Key=contract.INIT_PREFIX + "old.keras", Body=b"old")
    staged, _ = stage_init(str(start_model), tmp_path / "init")
    assert contract.upload_init(s3, "training-init", tmp_path / "init") == 2
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="training-init", Prefix=contract.INIT_PREFIX)["Contents"])
    assert keys == [contract.INIT_PREFIX + "start.json", contract.INIT_PREFIX + "start.keras"]
    with pytest.raises(contract.TrainingRunError, match="init model"):
        contract.check_hyperparameters({"head": "sdt"}, staged.config)


# --- the threshold the fine-tuned model writes ---------------------------------------------------------


def test_the_threshold_note_says_both_values_and_how_to_keep_the_parents(start_model):
    init = load_sidecar(start_model)
    parent = type(init)(init.path, {**init.sidecar, "threshold": 0.4})
    note = parent.threshold_note({"head": "binary", "threshold": 0.5}, given=False)
    assert note == ("threshold: the init model tiny-start version 7 calls a pixel a building at probability >= 0.4; "
                    "this model will use 0.5 (the threshold hyperparameter, its default) in its metrics and sidecar; "
                    "to keep the parent's, give --hyperparameters '{\"threshold\": 0.4}'")
    assert "0.6 (the threshold hyperparameter, as given)" in parent.threshold_note({"head": "binary", "threshold": 0.6}, True)
    assert parent.threshold_note({"head": "binary", "threshold": 0.4}, given=True) is None  # the parent's kept
    assert parent.threshold_note({"head": "sdt", "threshold": 0.5}, given=False) is None  # no threshold to keep
    assert init.threshold_note({"head": "binary", "threshold": 0.5}, given=False) is None  # equal: nothing to say


def test_fine_tuning_a_parent_of_another_threshold_logs_it_once(tmp_path, dataset, start_model):  # noqa: F811
    """The shipped model's case: parent 0.4, the fine-tuned model 0.5 unless given (the log says
    so once; the sidecar has what the line said). test_fine_tune_through_run_local: equal, no line."""
    folder = tmp_path / "parent"
    folder.mkdir()
    shutil.copy(start_model, folder / "start.keras")
    sidecar = json.loads(start_model.with_suffix(".json").read_text())
    (folder / "start.json").write_text(json.dumps({**sidecar, "threshold": 0.4}))
    lines: list[str] = []
    hp = {"epochs": 1, "freeze_epochs": 0, "samples_per_epoch": 4, "batch_size": 4}
    code = run_local(dataset, tmp_path / "root", hp, init=str(folder / "start.keras"), echo=lines.append)
    assert code == 0, "\n".join(lines[-30:])
    notes = [line for line in lines if line.startswith("threshold: the init model")]
    assert len(notes) == 1 and ">= 0.4; this model will use 0.5" in notes[0] and '{"threshold": 0.4}' in notes[0]
    assert json.loads((tmp_path / "root" / "model" / "model.json").read_text())["threshold"] == 0.5
