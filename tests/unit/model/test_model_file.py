"""The one resolver and check of a user-given model path (``looking_glass.model.model_file``):
a ``.keras`` file, its sidecar given instead, a folder holding one; and each way it can be
unusable (missing, corrupt, a zip that is not Keras, no or a bad sidecar, a model that does not
match its sidecar), on real Keras files of a tiny DeepLab V3+."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import pytest

from looking_glass.model.model_file import ModelFileError, check_model_file, resolve_model_path

SIZE = 64
TINY = {"alpha": 0.35, "aspp_filters": 8, "decoder_filters": 8, "low_level_filters": 8, "input_size": SIZE}


def save_tiny_model(folder: Path, head: str = "binary", sidecar: dict | None = None, name: str = "model") -> Path:
    """A real tiny model ``folder/name.keras`` and its sidecar (``sidecar`` overrides members)."""
    from looking_glass.model.deeplab import ModelConfig, build_deeplabv3plus

    folder.mkdir(parents=True, exist_ok=True)
    cfg = ModelConfig(**{**TINY, "head": head})
    path = folder / f"{name}.keras"
    build_deeplabv3plus(cfg).save(path)
    meta = {"model_id": "tiny", "version": "1", "config": cfg.to_dict(), **(sidecar or {})}
    path.with_suffix(".json").write_text(json.dumps(meta))
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("tiny"))


def _copy(model: Path, folder: Path, sidecar=True, name: str = "model") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{name}.keras"
    shutil.copy(model, target)
    if sidecar:
        shutil.copy(model.with_suffix(".json"), target.with_suffix(".json"))
    return target


def test_a_file_its_sidecar_and_its_folder_name_the_same_model(tiny):
    for spec in (tiny, tiny.with_suffix(".json"), tiny.parent):
        checked = check_model_file(str(spec), load=True)
        assert checked.path == tiny.resolve() and checked.sidecar["model_id"] == "tiny"


@pytest.mark.parametrize("case, message", [
    ("missing", "--model .*nope.keras: no such file or folder"),
    ("sidecar_alone", "that is a sidecar; its model .* does not exist"),
    ("empty_folder", "the folder holds 0 .keras model files"),
    ("two_models", r"the folder holds 2 .keras model files \(a.keras, b.keras\)"),
])
def test_paths_that_name_no_single_model(tmp_path, tiny, case, message):
    spec = {"missing": tmp_path / "nope.keras", "sidecar_alone": tmp_path / "lonely.json",
            "empty_folder": tmp_path / "empty", "two_models": tmp_path / "two"}[case]
    if case == "sidecar_alone":
        spec.write_text("{}")
    if case == "empty_folder":
        spec.mkdir()
    if case == "two_models":
        _copy(tiny, spec, name="a")
        _copy(tiny, spec, name="b")
    with pytest.raises(ModelFileError, match=message) as err:
        resolve_model_path(str(spec))
    assert err.value.exit_code == 2 and "\n" not in str(err.value)


def test_a_text_file_a_foreign_zip_and_a_damaged_archive_are_corrupt(tmp_path, tiny):
    fake = tmp_path / "fake" / "model.keras"  # the new user's 6-byte file with a real sidecar
    fake.parent.mkdir()
    fake.write_text("hello\n")
    shutil.copy(tiny.with_suffix(".json"), fake.with_suffix(".json"))
    with pytest.raises(ModelFileError, match=r"^--model .*fake/model.keras: not a Keras model file .*corrupt\?$"):
        check_model_file(str(fake))
    foreign = tmp_path / "zip" / "model.keras"
    foreign.parent.mkdir()
    with zipfile.ZipFile(foreign, "w") as z:
        z.writestr("readme.txt", "not a model")
    shutil.copy(tiny.with_suffix(".json"), foreign.with_suffix(".json"))
    with pytest.raises(ModelFileError, match="without Keras's config.json"):
        check_model_file(str(foreign))
    damaged = _copy(tiny, tmp_path / "damaged")
    with zipfile.ZipFile(damaged) as z:  # flip bytes inside the stored weights: the CRC no longer matches
        info = z.getinfo("model.weights.h5")
    data = bytearray(damaged.read_bytes())
    start = info.header_offset + 30 + len(info.filename) + len(info.extra) + info.compress_size // 2
    data[start:start + 64] = bytes(64)
    damaged.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="damaged|cannot be read|cannot be loaded"):
        check_model_file(str(damaged), load=True)


@pytest.mark.parametrize("sidecar, message", [
    (None, "no sidecar .*model.json"),
    ("{not json", "is not readable JSON"),
    ("[1, 2]", "is not a JSON object"),
    ({"model_id": "m"}, "lacks version"),
    ({"model_id": "m", "version": "1", "config": 3}, "config that is not a JSON object"),
])
def test_a_model_needs_a_usable_sidecar(tmp_path, tiny, sidecar, message):
    model = _copy(tiny, tmp_path / "m", sidecar=False)
    if sidecar is not None:
        model.with_suffix(".json").write_text(sidecar if isinstance(sidecar, str) else json.dumps(sidecar))
    with pytest.raises(ModelFileError, match=message):
        check_model_file(str(model))


def test_a_model_that_does_not_match_its_sidecar_fails_the_check(tmp_path, tiny):
    small = _copy(tiny, tmp_path / "size")
    meta = json.loads(small.with_suffix(".json").read_text())
    small.with_suffix(".json").write_text(json.dumps({**meta, "config": {**meta["config"], "input_size": 96}}))
    for load in (False, True):  # the archive's config.json shows it without TensorFlow; the load check too
        with pytest.raises(ModelFileError, match="input_size 96"):
            check_model_file(str(small), load=load)
    head = _copy(tiny, tmp_path / "head")
    head.with_suffix(".json").write_text(json.dumps({**meta, "config": {**meta["config"], "head": "sdt"}}))
    for load in (False, True):
        with pytest.raises(ModelFileError, match="not the sdt head"):
            check_model_file(str(head), load=load)


def test_demo_and_up_check_a_model_without_loading_tensorflow(tmp_path, tiny):
    """demo/up --model (local.inputs.validate_model) check the archive and its config, not a Keras
    load: the long-lived `up` process keeps no TensorFlow; a mismatch is still refused up front."""
    import subprocess
    import sys

    code = ("import sys; from looking_glass.local.inputs import validate_model; "
            f"print(validate_model({str(tiny)!r})); print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines() == [str(tiny.resolve()), "[]"]

    from looking_glass.local.inputs import InputError, validate_model

    wrong = _copy(tiny, tmp_path / "wrong")
    meta = json.loads(wrong.with_suffix(".json").read_text())
    wrong.with_suffix(".json").write_text(json.dumps({**meta, "config": {**meta["config"], "input_size": 96}}))
    with pytest.raises(InputError, match="input_size 96"):
        validate_model(str(wrong))
