"""The programs the cloud runs are package modules: started with ``python -m``, from any working
directory, with no source checkout on ``sys.path``; the checkout's scripts only delegate to them."""

from __future__ import annotations

import subprocess
import sys

from conftest import REPO_ROOT

from looking_glass.pipeline import launchers


def test_local_workers_run_the_worker_module():
    assert launchers.worker_command() == [sys.executable, "-m", "looking_glass.pipeline.worker_main"]
    from looking_glass.pipeline import worker_main

    assert callable(worker_main.main)


def test_the_lambda_handler_file_re_exports_the_package_handler():
    from lambdas.tile_enumerator.handler import handler
    from looking_glass.pipeline.enumerator_lambda import handler as package_handler

    assert handler is package_handler


def test_the_training_entry_point_runs_outside_the_checkout(tmp_path):
    table = subprocess.run(
        [sys.executable, "-m", "looking_glass.training.entrypoint", "--help-hyperparameters"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[0].split() == ["name", "type", "default", "meaning"]
    script = subprocess.run(
        [sys.executable, "-m", "training.train", "--help-hyperparameters"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
    )
    assert script.returncode == 0 and script.stdout == table.stdout
