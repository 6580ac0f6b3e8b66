"""The embedded run's state file: private (0600, its directory 0700 when created) and written
atomically under an unpredictable temporary name that never stays behind."""

from __future__ import annotations

import json
import os
import stat

import pytest

from looking_glass.local import deployment
from looking_glass.local.deployment import write_state
from looking_glass.runtime.resources import DeployedResources

RES = DeployedResources(
    trigger_bucket="t", masks_bucket="m", results_table="r",
    tile_queue_url="http://127.0.0.1:1/q", tile_dlq_url="http://127.0.0.1:1/d",
)


def test_the_state_file_is_private_and_complete(tmp_path):
    path = tmp_path / "new-dir" / "embedded.json"
    write_state(path, "http://127.0.0.1:5000", RES, "")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) & 0o077 == 0
    assert json.loads(path.read_text())["endpoint_url"] == "http://127.0.0.1:5000"
    assert os.listdir(path.parent) == ["embedded.json"]  # no temporary file left


def test_an_existing_world_readable_file_becomes_private(tmp_path):
    path = tmp_path / "embedded.json"
    path.write_text("{}")
    path.chmod(0o644)
    write_state(path, "http://127.0.0.1:5000", RES, "")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_predictable_temporary_name_cannot_be_planted(tmp_path):
    path = tmp_path / "embedded.json"
    planted = path.with_suffix(".tmp")  # the old fixed name: a link elsewhere is ignored now
    target = tmp_path / "elsewhere.txt"
    target.write_text("untouched")
    planted.symlink_to(target)
    write_state(path, "http://127.0.0.1:5000", RES, "")
    assert target.read_text() == "untouched"


def test_a_failed_write_leaves_the_old_state_and_no_temporary_file(tmp_path, monkeypatch):
    path = tmp_path / "embedded.json"
    write_state(path, "http://127.0.0.1:5000", RES, "")
    before = path.read_text()

    def refuse(*args):
        raise OSError("disk full")

    monkeypatch.setattr(deployment.os, "replace", refuse)
    with pytest.raises(OSError, match="disk full"):
        write_state(path, "http://127.0.0.1:6000", RES, "")
    assert path.read_text() == before
    assert sorted(os.listdir(tmp_path)) == ["embedded.json"]


def _state_of(path, pid):
    write_state(path, "http://127.0.0.1:5000", RES, "")
    state = json.loads(path.read_text())
    state["pid"] = pid
    path.write_text(json.dumps(state))
    return path.read_text()


def test_a_second_up_on_the_state_file_of_a_live_run_is_refused_and_changes_nothing(tmp_path):
    import subprocess
    import sys
    import threading

    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        path = tmp_path / "embedded.json"
        before = _state_of(path, other.pid)
        stop = threading.Event()
        stop.set()  # were the run not refused, it would start, overwrite the file, stop and delete it
        with pytest.raises(deployment.DeploymentError, match=rf"an embedded run is already up \(pid {other.pid}"):
            deployment.run_embedded(path, tmp_path / "run", stop_event=stop)
        assert path.read_text() == before  # the live run's state file is untouched
        assert not (tmp_path / "run").exists()  # nothing was started
    finally:
        other.kill()
        other.wait()


def test_the_state_file_of_a_run_that_is_gone_or_unreadable_does_not_block_a_new_run(tmp_path):
    import subprocess
    import sys

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    path = tmp_path / "embedded.json"
    _state_of(path, gone.pid)
    deployment.refuse_second_run(path)  # a dead pid: replaced by the new run
    path.write_text("{not json")
    deployment.refuse_second_run(path)
    deployment.refuse_second_run(tmp_path / "absent.json")
    _state_of(path, os.getpid())  # this very process (a restart in place) is not "another run"
    deployment.refuse_second_run(path)


def test_the_default_state_file_needs_no_embedded_option_and_any_other_names_it_quoted(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("LG_EMBEDDED_STATE", str(tmp_path / "elsewhere.json"))  # another terminal lacks it
    assert deployment.embedded_option(tmp_path / ".looking-glass" / "embedded.json") == ""
    assert deployment.embedded_option(tmp_path / "elsewhere.json") == f" --embedded {tmp_path / 'elsewhere.json'}"
    assert deployment.embedded_option(tmp_path / "a b.json") == f" --embedded '{tmp_path / 'a b.json'}'"
