"""The model registry and the active model (``looking-glass models``), on the embedded run's moto:
register versions, list them, ``models use`` one (an SSM parameter), go back, refuse unknown
versions without changing anything, and what a starting worker loads."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import run_cli
from test_model_file import save_tiny_model

from looking_glass.local.deployment import write_state
from looking_glass.model import registry

# The shipped model's own names, from its sidecar (they change when a new version ships).
SHIPPED_ID = registry.shipped_record().sidecar["model_id"]
SHIPPED_VERSION = str(registry.shipped_record().sidecar["version"])
SHIPPED_NAME = f"{SHIPPED_ID}/{SHIPPED_VERSION}"


_TINY: list[Path] = []


def _tiny_model() -> Path:
    """A real tiny Keras model (64 px, binary head), built once per test session."""
    import tempfile

    if not _TINY:
        _TINY.append(save_tiny_model(Path(tempfile.mkdtemp(prefix="lg-test-tiny-"))))
    return _TINY[0]


def _model(folder: Path, version: str, val_iou: float, parent: dict | None = None) -> Path:
    """A real (tiny) model file with its sidecar, as the registry checks it."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.keras"
    shutil.copy(_tiny_model(), path)
    meta = {"model_id": "tiny", "version": version, "config": json.loads(_tiny_model().with_suffix(".json").read_text())["config"],
            "validation": {"epoch": 3, "val_iou": val_iou, "val_f1": val_iou + 0.1}}
    if parent:
        meta["parent"] = parent
    path.with_suffix(".json").write_text(json.dumps(meta))
    return path


@pytest.fixture
def embedded(aws, tmp_path, moto_endpoint):
    session, names, resources = aws
    state = tmp_path / "embedded.json"
    write_state(state, moto_endpoint, resources, "http://127.0.0.1:1/{z}/{x}/{y}.png")
    return session, resources, str(state)


def test_register_list_use_and_go_back(embedded, tmp_path, capsys):
    session, resources, state = embedded
    ssm = session.client("ssm")
    parameter = registry.parameter_name(resources.masks_bucket)
    code, out, _ = run_cli(capsys, "models", "--embedded", state)
    assert code == 0 and "no registered models" in out and "none" in out

    first = _model(tmp_path / "a", "v1", 0.5)
    second = _model(tmp_path / "b", "v2", 0.7, parent={"model_id": "tiny", "version": "v1"})
    assert run_cli(capsys, "models", "register", str(first), "--embedded", state)[0] == 0
    code, out, _ = run_cli(capsys, "models", "register", str(second), "--embedded", state)
    assert code == 0 and f"s3://{resources.masks_bucket}/registry/tiny/v2/model.keras" in out
    code, _, err = run_cli(capsys, "models", "register", str(second), "--embedded", state)
    assert code == 2 and "already registered" in err

    code, out, _ = run_cli(capsys, "models", "use", "v2", "--embedded", state)
    assert code == 0 and "tiny/v2" in out
    assert ssm.get_parameter(Name=parameter)["Parameter"]["Value"].endswith("registry/tiny/v2/model.keras")
    code, out, _ = run_cli(capsys, "models", "--embedded", state, "--json")
    listing = json.loads(out)
    rows = {r["version"]: r for r in listing["models"]}
    assert rows["v2"]["active"] and not rows["v1"]["active"]
    assert rows["v2"]["val_iou"] == 0.7 and rows["v2"]["parent"] == "tiny/v1" and rows["v1"]["registered"]
    code, out, _ = run_cli(capsys, "models", "--embedded", state)
    assert any(line.startswith("*") and "tiny/v2" in line for line in out.splitlines())

    assert run_cli(capsys, "models", "use", "tiny/v1", "--embedded", state)[0] == 0  # going back
    assert ssm.get_parameter(Name=parameter)["Parameter"]["Value"].endswith("registry/tiny/v1/model.keras")


def test_unknown_version_is_refused_and_changes_nothing(embedded, tmp_path, capsys):
    session, resources, state = embedded
    ssm = session.client("ssm")
    parameter = registry.parameter_name(resources.masks_bucket)
    run_cli(capsys, "models", "register", str(_model(tmp_path / "a", "v1", 0.5)), "--embedded", state)
    code, _, err = run_cli(capsys, "models", "use", "v9", "--embedded", state)
    assert code == 2 and "no registered model version 'v9'" in err and "tiny/v1" in err
    with pytest.raises(ssm.exceptions.ParameterNotFound):
        ssm.get_parameter(Name=parameter)
    run_cli(capsys, "models", "use", "v1", "--embedded", state)
    before = ssm.get_parameter(Name=parameter)["Parameter"]
    assert run_cli(capsys, "models", "use", "nope", "--embedded", state)[0] == 2
    after = ssm.get_parameter(Name=parameter)["Parameter"]
    assert (after["Value"], after["Version"]) == (before["Value"], before["Version"])


def test_a_starting_worker_loads_the_active_model(embedded, tmp_path):
    session, resources, _ = embedded
    s3, ssm = session.client("s3"), session.client("ssm")
    parameter = registry.parameter_name(resources.masks_bucket)
    env = {registry.ENV_MODEL_PARAMETER: parameter}
    assert registry.resolve_worker_model(env, ssm=ssm, s3=s3) == ""  # nothing active: the shipped model
    registry.register(s3, resources.masks_bucket, _model(tmp_path / "a", "v1", 0.5))
    registry.register(s3, resources.masks_bucket, _model(tmp_path / "b", "v2", 0.6))
    registry.use(s3, ssm, resources.masks_bucket, parameter, "v2")
    path = Path(registry.resolve_worker_model(env, ssm=ssm, s3=s3, dest=tmp_path / "w"))
    assert path.read_bytes() == _tiny_model().read_bytes()
    assert json.loads(path.with_suffix(".json").read_text())["version"] == "v2"
    explicit = {**env, "LG_MODEL_PATH": "/models/pinned.keras"}  # --model wins over the parameter
    assert registry.resolve_worker_model(explicit, ssm=ssm, s3=s3) == "/models/pinned.keras"


def test_fetch_main_reads_the_parameter(embedded, tmp_path, capsys, monkeypatch):
    from looking_glass.model import fetch

    session, resources, _ = embedded
    s3, ssm = session.client("s3"), session.client("ssm")
    parameter = registry.parameter_name(resources.masks_bucket)
    env = {fetch.ENV_MODEL_PARAMETER: parameter, fetch.ENV_MODEL_DIR: str(tmp_path / "m")}
    assert fetch.main(env) == fetch.EXIT_USAGE  # nothing active yet
    registry.register(s3, resources.masks_bucket, _model(tmp_path / "a", "v1", 0.5))
    registry.use(s3, ssm, resources.masks_bucket, parameter, "v1")
    capsys.readouterr()
    assert fetch.main(env) == 0
    fetched = Path(capsys.readouterr().out.strip())
    assert json.loads(fetched.with_suffix(".json").read_text())["version"] == "v1"


def test_names_are_checked():
    with pytest.raises(registry.RegistryError, match="version"):
        registry.model_prefix("tiny", "v1/../x")
    assert registry.parameter_name("LookingGlass") == "/looking-glass/LookingGlass/active-model"


def test_a_training_jobs_archive_is_registered(embedded, tmp_path):
    import tarfile

    session, resources, _ = embedded
    s3 = session.client("s3")
    model = _model(tmp_path / "job", "looking-glass-1234", 0.8)
    archive = tmp_path / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(model, arcname="model.keras")
        tar.add(model.with_suffix(".json"), arcname="model.json")
    s3.upload_file(str(archive), resources.masks_bucket, "models/looking-glass-1234/output/model.tar.gz")
    uri = f"s3://{resources.masks_bucket}/models/looking-glass-1234/output/model.tar.gz"
    record = registry.register_artifact(s3, resources.masks_bucket, uri)
    assert record.name == "tiny/looking-glass-1234"
    assert [r.name for r in registry.list_models(s3, resources.masks_bucket)] == ["tiny/looking-glass-1234"]
    with pytest.raises(registry.RegistryError, match="cannot fetch"):
        registry.register_artifact(s3, resources.masks_bucket, uri.replace("1234", "9999"))


def test_find_accepts_a_leading_v_and_suggests_the_right_name():
    """Docs and plots call version "3" "v3": it names 3 when 3 is registered (a version really
    named "v2" still wins over "2"); an unknown name gets the closest one."""
    records = [registry.ModelRecord("m", v, f"s3://b/registry/m/{v}/model.keras", {}) for v in ("3", "v2", "2", "2024-05-01")]
    assert registry.find(records, "v3").name == "m/3"
    assert registry.find(records, "m/V3").name == "m/3"
    assert registry.find(records, "v2").name == "m/v2"
    with pytest.raises(registry.RegistryError) as err:
        registry.find(records, "v4")
    assert str(err.value) == "no registered model version 'v4'; known: m/3, m/v2, m/2, m/2024-05-01"  # text, not a list
    assert err.value.exit_code == 2
    with pytest.raises(registry.RegistryError, match=r"did you mean '2024-05-01'\?"):
        registry.find(records, "2024-05-02")
    with pytest.raises(registry.RegistryError, match=r"did you mean 'm/3'\?"):
        registry.find(records, "m/v3x")


def test_a_jobs_model_gets_a_short_label():
    assert registry.model_label("") == "default"
    assert registry.model_label("s3://b/registry/m-ft/7/model.keras") == "m-ft/7"
    assert registry.model_label("s3://b/registry/m-ft/model.keras") == "s3://b/registry/m-ft/model.keras"
    assert registry.model_label("s3://b/elsewhere/m/7/model.keras") == "s3://b/elsewhere/m/7/model.keras"
    assert registry.model_label("/models/m.keras") == "/models/m.keras"
    # what jobs record for the shipped model and an `up --model` file (model.identity)
    assert registry.model_label("shipped:seg/4") == "seg/4"
    assert registry.model_label("file:/m/a#b.keras#trial/2@sha256:0123456789abcdef") == "trial/2"


@pytest.mark.parametrize("name", ["shipped", "default", f"v{SHIPPED_VERSION}", SHIPPED_VERSION, SHIPPED_NAME])
def test_models_use_shipped_goes_back_to_the_shipped_model(embedded, tmp_path, capsys, name):
    """After `models use` of a registered version, the shipped model (by `shipped`, `default` or
    its own id/version) is active again: the parameter is gone, a starting worker loads the
    shipped model, and `models` marks its row active."""
    session, resources, state = embedded
    s3, ssm = session.client("s3"), session.client("ssm")
    parameter = registry.parameter_name(resources.masks_bucket)
    shipped = registry.shipped_record()
    assert shipped.name == SHIPPED_NAME
    code, out, _ = run_cli(capsys, "models", "--embedded", state)  # nothing registered: the shipped row, active
    assert code == 0 and any(line.startswith("*") and shipped.name in line for line in out.splitlines())
    assert run_cli(capsys, "models", "register", str(_model(tmp_path / "a", "ft1", 0.5)), "--embedded", state)[0] == 0
    assert run_cli(capsys, "models", "use", "ft1", "--embedded", state)[0] == 0
    listing = json.loads(run_cli(capsys, "models", "--embedded", state, "--json")[1])
    assert [(r["version"], r["shipped"]) for r in listing["models"] if r["active"]] == [("ft1", False)]

    code, out, err = run_cli(capsys, "models", "use", name, "--embedded", state)
    assert code == 0 and shipped.name in out and "tiny/ft1" in err, (out, err)
    with pytest.raises(ssm.exceptions.ParameterNotFound):
        ssm.get_parameter(Name=parameter)
    assert registry.resolve_worker_model({registry.ENV_MODEL_PARAMETER: parameter}, ssm=ssm, s3=s3) == ""
    listing = json.loads(run_cli(capsys, "models", "--embedded", state, "--json")[1])
    assert listing["active"] is None
    assert [(r["model_id"], r["version"], r["shipped"]) for r in listing["models"] if r["active"]] == [
        (SHIPPED_ID, SHIPPED_VERSION, True)]
    assert run_cli(capsys, "models", "use", name, "--embedded", state)[0] == 0  # again: nothing to clear, fine
    assert run_cli(capsys, "models", "use", "tiny/ft1", "--embedded", state)[0] == 0  # and forward again
    assert ssm.get_parameter(Name=parameter)["Parameter"]["Value"].endswith("registry/tiny/ft1/model.keras")


def test_a_version_shared_with_the_shipped_model_is_ambiguous(embedded, tmp_path, capsys):
    """The shipped model's version (e.g. `4`) names both a registered tiny/4 and the shipped model: refused, nothing changes;
    the unknown-name error lists the shipped model too."""
    session, resources, state = embedded
    ssm = session.client("ssm")
    assert run_cli(capsys, "models", "register", str(_model(tmp_path / "a", SHIPPED_VERSION, 0.5)), "--embedded", state)[0] == 0
    code, _, err = run_cli(capsys, "models", "use", SHIPPED_VERSION, "--embedded", state)
    assert code == 2 and "give <model_id>/<version>" in err and f"tiny/{SHIPPED_VERSION}" in err
    code, _, err = run_cli(capsys, "models", "use", "nope", "--embedded", state)
    assert code == 2 and f"{SHIPPED_NAME} (shipped)" in err
    with pytest.raises(ssm.exceptions.ParameterNotFound):
        ssm.get_parameter(Name=registry.parameter_name(resources.masks_bucket))


def test_a_corrupt_or_mismatched_model_is_not_registered(embedded, tmp_path, capsys):
    """The new user's 6-byte ``model.keras`` with a real sidecar, and a real model whose sidecar
    names another input size: one error line, exit 2, nothing uploaded."""
    session, resources, state = embedded
    fake = tmp_path / "fake" / "model.keras"
    fake.parent.mkdir()
    fake.write_text("hello\n")
    shutil.copy(_model(tmp_path / "real", "broken", 0.5).with_suffix(".json"), fake.with_suffix(".json"))
    code, out, err = run_cli(capsys, "models", "register", str(fake), "--version", "broken", "--embedded", state)
    assert code == 2 and "registered" not in out and err.count("\n") == 1, (out, err)
    assert f"cannot register {fake}: not a Keras model file" in err and "corrupt?" in err
    liar = _model(tmp_path / "liar", "liar", 0.5)
    meta = json.loads(liar.with_suffix(".json").read_text())
    liar.with_suffix(".json").write_text(json.dumps({**meta, "config": {**meta["config"], "input_size": 96}}))
    code, _, err = run_cli(capsys, "models", "register", str(liar), "--embedded", state)
    assert code == 2 and "input_size 96" in err and err.count("\n") == 1
    listed = session.client("s3").list_objects_v2(Bucket=resources.masks_bucket, Prefix=registry.REGISTRY_PREFIX)
    assert listed.get("KeyCount", 0) == 0


def test_a_corrupt_version_registered_before_the_check_is_not_made_active(embedded, tmp_path, capsys):
    """A registry entry from before the check (written directly): `models use` refuses it naming
    the version and its URI, and the active model stays what it was."""
    session, resources, state = embedded
    s3, ssm = session.client("s3"), session.client("ssm")
    bucket = resources.masks_bucket
    meta = json.loads(_model(tmp_path / "real", "old", 0.5).with_suffix(".json").read_text())
    s3.put_object(Bucket=bucket, Key="registry/tiny/old/model.keras", Body=b"hello\n")
    s3.put_object(Bucket=bucket, Key="registry/tiny/old/model.json", Body=json.dumps(meta).encode())
    code, _, err = run_cli(capsys, "models", "use", "old", "--embedded", state)
    uri = f"s3://{bucket}/registry/tiny/old/model.keras"
    assert code == 2 and err.count("\n") == 1, err
    assert f"tiny/old ({uri}): not a Keras model file" in err and "not made active" in err and "lg-use-" not in err
    with pytest.raises(ssm.exceptions.ParameterNotFound):
        ssm.get_parameter(Name=registry.parameter_name(bucket))


def test_a_worker_names_the_active_version_it_cannot_load(embedded, tmp_path):
    """A worker whose active model (set behind the registry's back) is corrupt exits 3 with a
    line naming the version and its registry URI, not the temporary file it fetched."""
    import os
    import subprocess
    import sys

    session, resources, _ = embedded
    s3, ssm = session.client("s3"), session.client("ssm")
    bucket = resources.masks_bucket
    uri = f"s3://{bucket}/registry/tiny/old/model.keras"
    meta = {**json.loads(_model(tmp_path / "real", "old", 0.5).with_suffix(".json").read_text()), "registry_uri": uri}
    s3.put_object(Bucket=bucket, Key="registry/tiny/old/model.keras", Body=b"hello\n")
    s3.put_object(Bucket=bucket, Key="registry/tiny/old/model.json", Body=json.dumps(meta).encode())
    parameter = registry.parameter_name(bucket)
    ssm.put_parameter(Name=parameter, Value=uri, Type="String")
    env = {**os.environ, **resources.to_env(), "LG_TILE_URL_TEMPLATE": "http://tiles.local/{z}/{x}/{y}.png",
           registry.ENV_MODEL_PARAMETER: parameter, "LG_MODEL_DIR": str(tmp_path / "fetched")}
    env.pop("LG_MODEL_PATH", None)
    proc = subprocess.run([sys.executable, "-m", "looking_glass.pipeline.worker_main"], env=env,
                          capture_output=True, text=True, timeout=180)
    lines = [line for line in proc.stdout.splitlines() if "cannot load model" in line]
    assert proc.returncode == 3 and len(lines) == 1, proc.stdout + proc.stderr
    assert f"cannot load model tiny/old ({uri}): not a Keras model file" in lines[0]
    assert str(tmp_path / "fetched") not in lines[0]
