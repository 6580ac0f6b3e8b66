"""The worker image's model fetch (looking_glass.model.fetch, run by batch_jobs/Dockerfile's
lg-worker launcher) against moto's S3: a .keras file with its sidecar, a SageMaker
model.tar.gz, and the failures that must exit 3."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import tarfile
import uuid

import boto3
import pytest
from conftest import REPO_ROOT

from looking_glass.model import fetch
from looking_glass.model.fetch import ModelFetchError, fetch_model, parse_s3_uri


@pytest.fixture
def bucket(moto_endpoint):
    s3 = boto3.client("s3")
    name = f"models-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=name)
    return s3, name


def _archive(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_parse_s3_uri():
    assert parse_s3_uri("s3://b/models/v3/model.keras") == ("b", "models/v3/model.keras")
    for bad in ("b/models/model.keras", "s3://b", "s3:///key", "https://b/key"):
        with pytest.raises(ModelFetchError, match="not an s3://bucket/key URI"):
            parse_s3_uri(bad)


def test_a_keras_file_comes_with_its_sidecar(bucket, tmp_path):
    s3, name = bucket
    s3.put_object(Bucket=name, Key="looking-glass/v3/seg.keras", Body=b"keras bytes")
    s3.put_object(Bucket=name, Key="looking-glass/v3/seg.json", Body=b'{"model_id": "m"}')
    model = fetch_model(f"s3://{name}/looking-glass/v3/seg.keras", tmp_path / "model", s3)
    assert model == tmp_path / "model" / "seg.keras"
    assert model.read_bytes() == b"keras bytes"
    assert model.with_suffix(".json").read_text() == '{"model_id": "m"}'


def test_a_keras_file_without_its_sidecar_fails(bucket, tmp_path):
    s3, name = bucket
    s3.put_object(Bucket=name, Key="seg.keras", Body=b"keras bytes")
    with pytest.raises(Exception, match="404|Not Found"):
        fetch_model(f"s3://{name}/seg.keras", tmp_path, s3)


def test_a_sagemaker_archive_is_extracted(bucket, tmp_path):
    s3, name = bucket
    body = _archive({"model.keras": b"keras bytes", "model.json": b"{}", "export/saved_model.pb": b"pb"})
    s3.put_object(Bucket=name, Key="models/job-1/output/model.tar.gz", Body=body)
    model = fetch_model(f"s3://{name}/models/job-1/output/model.tar.gz", tmp_path, s3)
    assert model == tmp_path / "model.keras" and model.read_bytes() == b"keras bytes"
    assert (tmp_path / "model.json").read_text() == "{}"
    assert (tmp_path / "export" / "saved_model.pb").is_file()


@pytest.mark.parametrize("members", [{"model.json": b"{}"}, {"a/one.keras": b"1", "b/two.keras": b"2"}])
def test_an_archive_needs_exactly_one_keras_file(bucket, tmp_path, members):
    s3, name = bucket
    s3.put_object(Bucket=name, Key="m.tgz", Body=_archive(members))
    with pytest.raises(ModelFetchError, match=r"archive holds \d \.keras files, expected 1"):
        fetch_model(f"s3://{name}/m.tgz", tmp_path, s3)


def test_an_archive_cannot_write_outside_its_folder(bucket, tmp_path):
    s3, name = bucket
    s3.put_object(Bucket=name, Key="evil.tar.gz", Body=_archive({"../escaped.keras": b"x"}))
    with pytest.raises(tarfile.TarError):
        fetch_model(f"s3://{name}/evil.tar.gz", tmp_path / "dest", s3)
    assert not (tmp_path / "escaped.keras").exists()


def test_main_prints_the_model_path(bucket, tmp_path, capsys):
    s3, name = bucket
    s3.put_object(Bucket=name, Key="seg.keras", Body=b"k")
    s3.put_object(Bucket=name, Key="seg.json", Body=b"{}")
    env = {"LG_MODEL_S3_URI": f"s3://{name}/seg.keras", "LG_MODEL_DIR": str(tmp_path / "m")}
    assert fetch.main(env) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "m" / "seg.keras")


def test_main_exit_codes(bucket, tmp_path, capsys):
    _, name = bucket
    assert fetch.main({}) == 2
    assert "LG_MODEL_S3_URI is not set" in capsys.readouterr().err
    env = {"LG_MODEL_S3_URI": f"s3://{name}/missing.keras", "LG_MODEL_DIR": str(tmp_path)}
    assert fetch.main(env) == fetch.EXIT_NO_MODEL == 3
    captured = capsys.readouterr()
    assert captured.out == "" and f"cannot fetch model s3://{name}/missing.keras" in captured.err


def _launcher_script() -> str:
    """The lg-worker launcher that batch_jobs/Dockerfile writes into the image."""
    dockerfile = (REPO_ROOT / "batch_jobs" / "Dockerfile").read_text()
    found = re.search(r"^COPY <<'EOF' /usr/local/bin/lg-worker\n(.*?)^EOF$", dockerfile, re.S | re.M)
    assert found, "no lg-worker launcher in batch_jobs/Dockerfile"
    return found.group(1)


def _run_launcher(tmp_path, env):
    script = tmp_path / "lg-worker"
    script.write_text(_launcher_script())
    script.chmod(0o755)
    bin_dir = tmp_path / "bin"  # `python` in the image is the interpreter that runs the tests here
    bin_dir.mkdir()
    (bin_dir / "python").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    (bin_dir / "python").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", **env}
    return subprocess.run([str(script)], env=env, capture_output=True, text=True, timeout=180)


def test_the_image_launcher_exits_3_when_the_model_cannot_be_fetched(bucket, tmp_path):
    _, name = bucket
    proc = _run_launcher(tmp_path, {"LG_MODEL_S3_URI": f"s3://{name}/nothing/model.tar.gz",
                                    "LG_MODEL_DIR": str(tmp_path / "model")})
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert f"cannot fetch model s3://{name}/nothing/model.tar.gz" in proc.stderr


def test_the_image_launcher_hands_the_fetched_model_to_the_worker(aws, bucket, tmp_path):
    _, _, resources = aws
    s3, name = bucket
    s3.put_object(Bucket=name, Key="v1/seg.keras", Body=b"not a keras file")
    s3.put_object(Bucket=name, Key="v1/seg.json", Body=b"{}")
    proc = _run_launcher(tmp_path, {**resources.to_env(),
                                    "LG_MODEL_S3_URI": f"s3://{name}/v1/seg.keras",
                                    "LG_MODEL_DIR": str(tmp_path / "model"),
                                    "LG_TILE_URL_TEMPLATE": "http://127.0.0.1:9/{z}/{x}/{y}.png"})
    # The worker got LG_MODEL_PATH (the fetched file) and could not load it: exit 3, saying which.
    assert (tmp_path / "model" / "seg.keras").read_bytes() == b"not a keras file"
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert f"cannot load model '{tmp_path / 'model' / 'seg.keras'}'" in proc.stdout + proc.stderr
