"""The worker image's model fetch with and without an ONNX export beside the model (moto S3)."""

from __future__ import annotations

import io
import json
import tarfile
import uuid

import pytest
from botocore.exceptions import ClientError

from looking_glass.model import fetch
from looking_glass.model.fetch import fetch_model, fetch_optional


@pytest.fixture
def bucket(aws):
    session, _, _ = aws
    s3 = session.client("s3")
    name = f"models-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=name)
    return s3, name


def test_the_onnx_export_comes_with_the_model(bucket, tmp_path):
    s3, name = bucket
    for suffix, body in ((".keras", b"k"), (".json", b"{}"), (".onnx", b"o")):
        s3.put_object(Bucket=name, Key=f"v3/seg{suffix}", Body=body)
    model = fetch_model(f"s3://{name}/v3/seg.keras", tmp_path, s3)
    assert model == tmp_path / "seg.keras"
    assert model.with_suffix(".onnx").read_bytes() == b"o"


def test_a_model_without_onnx_export_still_fetches(bucket, tmp_path):
    s3, name = bucket
    s3.put_object(Bucket=name, Key="v3/seg.keras", Body=b"k")
    s3.put_object(Bucket=name, Key="v3/seg.json", Body=b"{}")
    (tmp_path / "seg.onnx").write_bytes(b"an older model's export")
    model = fetch_model(f"s3://{name}/v3/seg.keras", tmp_path, s3)
    assert model.read_bytes() == b"k" and model.with_suffix(".json").exists()
    assert not model.with_suffix(".onnx").exists()  # the stale file is gone, not used


def test_an_archive_brings_its_onnx_export(bucket, tmp_path):
    s3, name = bucket
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for member, data in (("model.keras", b"k"), ("model.json", b"{}"), ("model.onnx", b"o")):
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    s3.put_object(Bucket=name, Key="job/output/model.tar.gz", Body=buf.getvalue())
    model = fetch_model(f"s3://{name}/job/output/model.tar.gz", tmp_path, s3)
    assert model.with_suffix(".onnx").read_bytes() == b"o"


class _FailingS3:
    def __init__(self, code):
        self.code = code

    def download_file(self, bucket, key, filename):
        raise ClientError({"Error": {"Code": self.code, "Message": "x"}}, "HeadObject")


@pytest.mark.parametrize("code", ["404", "403", "NoSuchKey"])
def test_missing_or_forbidden_onnx_is_absent(tmp_path, code):
    assert fetch_optional(_FailingS3(code), "b", "k.onnx", tmp_path / "k.onnx") is False


def test_other_s3_errors_are_raised(tmp_path):
    with pytest.raises(ClientError):
        fetch_optional(_FailingS3("500"), "b", "k.onnx", tmp_path / "k.onnx")


def test_main_exports_a_model_without_onnx_at_start(bucket, tmp_path, capsys):
    pytest.importorskip("keras")
    pytest.importorskip("tf2onnx")
    pytest.importorskip("onnxruntime")
    import keras

    from looking_glass.model.deeplab import ModelConfig, build_deeplabv3plus
    from looking_glass.model.inference import onnx_problem

    s3, name = bucket
    keras.utils.set_random_seed(0)
    cfg = ModelConfig(alpha=0.35, aspp_filters=8, decoder_filters=8, low_level_filters=8, input_size=64)
    build_deeplabv3plus(cfg).save(tmp_path / "m.keras")
    meta = {"model_id": "tiny", "version": "1", "trained": False, "description": "", "config": cfg.to_dict()}
    s3.upload_file(str(tmp_path / "m.keras"), name, "m.keras")
    s3.put_object(Bucket=name, Key="m.json", Body=json.dumps(meta).encode())
    dest = tmp_path / "dest"
    env = {"LG_MODEL_S3_URI": f"s3://{name}/m.keras", "LG_MODEL_DIR": str(dest)}

    assert fetch.main({**env, "LG_ONNX_EXPORT_AT_START": "false"}) == 0
    assert not (dest / "m.onnx").exists()
    assert fetch.main({**env, "LG_RUNTIME": "keras"}) == 0
    assert not (dest / "m.onnx").exists()
    capsys.readouterr()

    assert fetch.main(env) == 0
    out = capsys.readouterr()
    assert out.out.strip() == str(dest / "m.keras")  # stdout holds the path only
    assert "exporting it to ONNX now" in out.err
    assert onnx_problem(dest / "m.keras") is None
