"""ONNX export and the ONNX Runtime path of the segmenter (issue 19), on tiny models.

The export is checked against Keras before it is written; the segmenter runs it by default and
falls back to Keras when it is missing or not the checked file; LG_RUNTIME forces either.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

pytest.importorskip("keras")
pytest.importorskip("onnxruntime")
pytest.importorskip("tf2onnx")

from looking_glass.model import onnx_export  # noqa: E402
from looking_glass.model.inference import (  # noqa: E402
    CPU_TILES_PER_RUN,
    OnnxRunner,
    RuntimeUnavailable,
    choose_providers,
    default_threads,
    onnx_problem,
)
from looking_glass.model.onnx_export import OnnxExportError, export_onnx, onnx_path  # noqa: E402
from looking_glass.model.segmenter import Segmenter, building_area_m2  # noqa: E402
from looking_glass.runtime.settings import ModelRuntimeSettings, SettingsError  # noqa: E402

SIZE = 64
TILES = [(152950 + i % 4, 132480 + i // 4) for i in range(8)]


def _save_tiny(folder, head="binary", seed=0):
    """A tiny DeepLab V3+ (MobileNetV2 x0.35, 64 px) saved as folder/tiny.keras with its sidecar."""
    import keras

    from looking_glass.model.deeplab import ModelConfig, build_deeplabv3plus

    keras.utils.set_random_seed(seed)
    cfg = ModelConfig(alpha=0.35, aspp_filters=8, decoder_filters=8, low_level_filters=8, input_size=SIZE, head=head)
    model = build_deeplabv3plus(cfg)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "tiny.keras"
    model.save(path)
    meta = {"model_id": f"tiny-{head}", "version": "1", "trained": False, "description": "tiny test model",
            "threshold": 0.5, "config": cfg.to_dict()}
    path.with_suffix(".json").write_text(json.dumps(meta))
    return path, model


@pytest.fixture(scope="module")
def tiles():
    return onnx_export.sample_tiles(8, SIZE)


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tiles):
    """A tiny binary model exported once: (folder, model path, the ONNX record)."""
    folder = tmp_path_factory.mktemp("exported")
    path, model = _save_tiny(folder)
    record = export_onnx(path, model=model, tiles=tiles)
    return folder, path, record


@pytest.fixture
def model_copy(exported, tmp_path):
    """A private copy of the exported model (keras, json, onnx) to tamper with."""
    folder, path, _ = exported
    for f in folder.iterdir():
        shutil.copy(f, tmp_path / f.name)
    return tmp_path / path.name


def test_export_writes_the_onnx_file_and_its_check(exported):
    _, path, record = exported
    assert onnx_path(path).is_file()
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["onnx"] == record
    check = record["check"]
    assert check["passed"] and check["mask_agreement"] >= 0.9999 and check["max_abs_diff"] < 1e-4
    assert check["tiles"] == 8 and record["opset"] == 17 and record["input"]["shape"] == [None, SIZE, SIZE, 3]
    assert onnx_problem(path) is None


def test_onnx_runtime_gives_the_keras_masks_and_areas(exported, tiles, caplog):
    _, path, _ = exported
    onnx = Segmenter.load(str(path), runtime="auto", threads=1)
    keras_seg = Segmenter.load(str(path), runtime="keras")
    assert onnx.runtime == "onnx" and onnx.provider == "CPUExecutionProvider"
    assert keras_seg.runtime == "keras"
    raw_a, raw_b = onnx.predict_raw(tiles), keras_seg.predict_raw(tiles)
    assert np.abs(raw_a - raw_b).max() < 1e-4
    for threshold in (0.5, float(np.median(raw_b))):  # the median: half the pixels are buildings
        a = onnx.predict_masks(tiles, threshold)
        b = keras_seg.predict_masks(tiles, threshold)
        assert np.array_equal(a, b)
        for mask_a, mask_b, (x, y) in zip(a, b, TILES):
            area_a, area_b = building_area_m2(mask_a, x, y, 18), building_area_m2(mask_b, x, y, 18)
            assert area_a == pytest.approx(area_b, rel=1e-6, abs=1e-9)


def test_the_keras_model_is_loaded_only_when_asked_for(exported):
    _, path, _ = exported
    seg = Segmenter.load(str(path), runtime="onnx")
    assert seg._model is None
    assert seg.model.count_params() > 0  # loaded on first use (e.g. by accelerated())
    assert seg.accelerated().runtime == "keras"


def test_sdt_head_round_trip(tmp_path):
    path, model = _save_tiny(tmp_path, head="sdt", seed=1)
    tiles = onnx_export.sample_tiles(2, SIZE)
    record = export_onnx(path, model=model, tiles=tiles)
    assert record["head"] == "sdt" and record["check"]["passed"]
    seg = Segmenter.load(str(path), runtime="onnx", threads=1)
    assert np.array_equal(seg.predict_masks(tiles), Segmenter.load(str(path), runtime="keras").predict_masks(tiles))


def test_an_export_that_disagrees_is_refused_and_nothing_written(model_copy, tiles, monkeypatch):
    def flipped(onnx_bytes, images, batch):
        out = onnx_export._keras_outputs(model, images, batch)
        return 1.0 - out  # every mask pixel flips

    import keras

    model = keras.saving.load_model(model_copy, compile=False)
    monkeypatch.setattr(onnx_export, "_onnx_outputs", flipped)
    with pytest.raises(OnnxExportError, match="does not give the Keras model's masks"):
        export_onnx(model_copy, model=model, tiles=tiles[:2])
    assert not onnx_path(model_copy).exists()  # the older export went too
    assert "onnx" not in json.loads(model_copy.with_suffix(".json").read_text())


def test_missing_onnx_falls_back_to_keras_and_forced_onnx_fails(model_copy, caplog):
    onnx_path(model_copy).unlink()
    seg = Segmenter.load(str(model_copy), runtime="auto")
    assert seg.runtime == "keras" and "not found" in seg.fallback_reason
    assert "running tiny.keras with Keras" in caplog.text
    with pytest.raises(RuntimeUnavailable, match="no ONNX export"):
        Segmenter.load(str(model_copy), runtime="onnx")


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        ("corrupt", "not the file that was checked"),
        ("keras_changed", "changed since the ONNX export"),
        ("no_record", "no record of a checked ONNX export"),
        ("failed_check", "did not pass its check"),
        ("other_size", "takes [128, 128, 3] inputs"),
        ("unloadable", "ONNX Runtime cannot load"),
    ],
)
def test_an_unusable_onnx_file_is_refused_and_keras_used(model_copy, tamper, reason):
    onnx_file, sidecar = onnx_path(model_copy), model_copy.with_suffix(".json")
    meta = json.loads(sidecar.read_text())
    if tamper == "corrupt":
        data = bytearray(onnx_file.read_bytes())
        data[len(data) // 2] ^= 0xFF
        onnx_file.write_bytes(bytes(data))
    elif tamper == "keras_changed":
        with open(model_copy, "ab") as f:
            f.write(b"\0")
    elif tamper == "no_record":
        del meta["onnx"]
    elif tamper == "failed_check":
        meta["onnx"]["check"]["passed"] = False
    elif tamper == "other_size":
        meta["onnx"]["input"]["shape"] = [None, 128, 128, 3]
    elif tamper == "unloadable":  # the recorded hash of a file ONNX Runtime cannot read
        onnx_file.write_bytes(b"not an onnx model")
        meta["onnx"]["sha256"] = onnx_export.file_sha256(onnx_file)
    sidecar.write_text(json.dumps(meta))
    if tamper == "keras_changed":
        return  # a .keras with a byte appended no longer loads; the problem is what matters
    seg = Segmenter.load(str(model_copy), runtime="auto")
    assert seg.runtime == "keras" and reason in seg.fallback_reason
    with pytest.raises(RuntimeUnavailable, match="cannot run .* with ONNX Runtime"):
        Segmenter.load(str(model_copy), runtime="onnx")


def test_a_stale_export_is_refused(model_copy):
    with open(model_copy, "ab") as f:
        f.write(b"\0")
    assert "changed since the ONNX export" in onnx_problem(model_copy)


def test_lg_runtime_forces_either(exported, monkeypatch):
    _, path, _ = exported
    monkeypatch.setenv("LG_RUNTIME", "keras")
    assert Segmenter.load(str(path)).runtime == "keras"
    monkeypatch.setenv("LG_RUNTIME", "onnx")
    monkeypatch.setenv("LG_INFERENCE_THREADS", "1")
    seg = Segmenter.load(str(path))
    assert seg.runtime == "onnx" and seg.runner.threads == 1
    assert "ONNX Runtime" in seg.describe() and "CPUExecutionProvider" in seg.describe()


def test_runtime_settings(monkeypatch):
    assert ModelRuntimeSettings.from_env({}) == ModelRuntimeSettings("auto", 0, None, 0)
    got = ModelRuntimeSettings.from_env({"LG_RUNTIME": "onnx", "LG_INFERENCE_THREADS": "3", "LG_ONNX_PROVIDERS": "CUDA, cpu",
                                         "LG_ONNX_TILES_PER_RUN": "8"})
    assert got == ModelRuntimeSettings("onnx", 3, ("cuda", "cpu"), 8)
    for env, name in [({"LG_RUNTIME": "tensorrt"}, "LG_RUNTIME"), ({"LG_INFERENCE_THREADS": "-1"}, "LG_INFERENCE_THREADS"),
                      ({"LG_ONNX_PROVIDERS": "rocm"}, "LG_ONNX_PROVIDERS"), ({"LG_ONNX_TILES_PER_RUN": "-2"}, "LG_ONNX_TILES_PER_RUN"),
                      ({"LG_ONNX_TILES_PER_RUN": "two"}, "LG_ONNX_TILES_PER_RUN")]:
        with pytest.raises(SettingsError, match=name):
            ModelRuntimeSettings.from_env(env)


def test_tiles_per_run_gives_the_whole_batch_outputs(exported, tiles, monkeypatch):
    _, path, _ = exported
    whole = OnnxRunner(onnx_path(path), threads=1, tiles_per_run=len(tiles))
    images = np.ascontiguousarray(tiles, dtype=np.float32)
    expected = whole(images)
    for per_run in (1, 3, 5):  # 3 and 5 leave a shorter last run
        runner = OnnxRunner(onnx_path(path), threads=1, tiles_per_run=per_run)
        got = runner(images)
        assert got.shape == expected.shape and got.dtype == expected.dtype
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
        assert f"{per_run} tiles per run" in runner.describe()
    assert OnnxRunner(onnx_path(path), threads=1).tiles_per_run == CPU_TILES_PER_RUN  # the CPU default
    monkeypatch.setenv("LG_ONNX_TILES_PER_RUN", "3")
    assert Segmenter.load(str(path), runtime="onnx").runner.tiles_per_run == 3
    monkeypatch.setenv("LG_ONNX_TILES_PER_RUN", "0")
    assert Segmenter.load(str(path), runtime="onnx").runner.tiles_per_run == CPU_TILES_PER_RUN
    with pytest.raises(ValueError, match="tiles_per_run must be at least 1"):
        OnnxRunner(onnx_path(path), tiles_per_run=0)


def test_provider_choice():
    trt, cuda, cpu = "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"
    gpu_build = ["AzureExecutionProvider", cpu, cuda, trt]  # as onnxruntime-gpu lists them
    assert choose_providers(gpu_build) == [trt, cuda, cpu]
    assert choose_providers([cpu, cuda]) == [cuda, cpu]
    assert choose_providers(["AzureExecutionProvider", cpu]) == [cpu]
    assert choose_providers(gpu_build, allowed=("cuda",)) == [cuda, cpu]
    assert choose_providers(gpu_build, allowed=("cpu",)) == [cpu]
    assert choose_providers([cpu], allowed=("tensorrt",)) == [cpu]


def test_default_threads_leave_a_core():
    assert default_threads(1) == 1
    assert default_threads(2) == 1
    assert default_threads(16) == 15
    assert default_threads() >= 1


def test_the_shipped_model_has_a_checked_export():
    from looking_glass.model.segmenter import SHIPPED_MODEL

    problem = onnx_problem(SHIPPED_MODEL)
    assert problem is None, (
        f"{problem}: re-export the shipped model with `python -m looking_glass.model.onnx_export {SHIPPED_MODEL}`"
    )
