"""Run the SageMaker training entry point (:mod:`looking_glass.training.entrypoint`) locally.

:func:`run_local` lays out a root like SageMaker's ``/opt/ml``::

    <root>/input/config/hyperparameters.json   every value a string, as SageMaker writes them
    <root>/input/data/train       -> data_dir   (symlinks; copies where symlinks fail)
    <root>/input/data/validation  -> data_dir
    <root>/input/data/init        the starting model to fine-tune (``init``: shipped, a path or
                                  an s3:// URI; see looking_glass.training.init), if given

and runs ``python -m looking_glass.training.entrypoint --root <root>`` in a subprocess (the
program ``training/train.py`` runs in the training image), streaming its output, so the local run
is the very code the training job runs. The model lands in ``<root>/model``, checkpoints in ``<root>/checkpoints``
(running again with the same root resumes from them), TensorBoard logs in
``<root>/output/tensorboard``, and a failure reason in ``<root>/output/failure``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable

from looking_glass.training.contract import check_hyperparameters, dataset_files, hyperparameter_strings
from looking_glass.training.init import stage_init

CHANNELS = ("train", "validation")
# The entry point's module: what ``training/train.py`` (the training image's ``train``) runs.
ENTRY_MODULE = "looking_glass.training.entrypoint"


def _check_data_dir(data_dir) -> Path:
    """The resolved dataset folder ``data_dir``; raises ValueError when it is missing, not a
    folder, neither a prepared dataset nor a folder of shards, or a prepared dataset without a
    train chip (checked on its manifest, before anything is staged or TensorFlow loaded)."""
    path = Path(data_dir).expanduser()
    if path.is_dir() and not (path / "manifest.json").exists() and any(path.glob("shard-*.npz")):
        return path.resolve()  # a folder of shards
    # No such folder, no manifest.json, one that is not a looking-glass-chips manifest, no train
    # chip: the lines train --stack (and evaluate/plot --data) give (datasets.chips.read_manifest).
    dataset_files(path)
    return path.resolve()


def _link_or_copy(target: Path, link: Path) -> str:
    if link.is_symlink() or link.is_file():
        link.unlink()
    elif link.is_dir():
        shutil.rmtree(link)
    try:
        link.symlink_to(target, target_is_directory=True)
        return "symlink"
    except OSError:
        shutil.copytree(target, link)
        return "copy"


def prepare_root(data_dir, root, hyperparameters: dict | None = None, init: str | None = None) -> Path:
    """Lay out ``root`` for the entry point (see the module docstring); returns the root (a new
    temporary folder when ``root`` is None).

    Everything is checked before anything is written to ``root``: the dataset
    (:func:`_check_data_dir`), the starting model ``init`` (staged in a temporary folder first,
    then moved into the ``init`` channel; its source recorded as the ``init_source``
    hyperparameter) and every hyperparameter with the job's own rules, combinations and the init
    model's defaults included (:func:`~looking_glass.training.contract.check_hyperparameters`;
    no TensorFlow). Without ``init`` the root has no ``init`` channel. Raises ``ValueError``
    (:class:`~looking_glass.training.init.InitModelError` and
    :class:`~looking_glass.training.contract.TrainingRunError` included) for bad inputs.
    """
    data = _check_data_dir(data_dir)
    values = hyperparameter_strings(hyperparameters)
    with tempfile.TemporaryDirectory(prefix="lg-init-") as staging:
        staged_dir, init_config = Path(staging) / "init", None
        if init:
            staged, source = stage_init(init, staged_dir)
            init_config = staged.config
            values.setdefault("init_source", source)
        check_hyperparameters(values, init_config)
        root = Path(root if root is not None else tempfile.mkdtemp(prefix="looking-glass-train-")).expanduser().resolve()
        init_dir = root / "input" / "data" / "init"
        if init_dir.exists():
            shutil.rmtree(init_dir)
        if init:
            init_dir.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(staged_dir), str(init_dir))
    config = root / "input" / "config"
    config.mkdir(parents=True, exist_ok=True)
    (config / "hyperparameters.json").write_text(json.dumps(values, indent=1) + "\n")
    channels = root / "input" / "data"
    channels.mkdir(parents=True, exist_ok=True)
    for channel in CHANNELS:
        _link_or_copy(data, channels / channel)
    return root


def run_local(
    data_dir,
    root=None,
    hyperparameters: dict | None = None,
    *,
    init: str | None = None,
    echo: Callable[[str], None] | None = None,
    python: list[str] | None = None,
) -> int:
    """Train on ``data_dir`` (a prepared dataset or a folder of shards) with the SageMaker entry
    point in a subprocess; returns its exit code (0 ok, 1 failed, 2 bad hyperparameters, 143
    stopped by SIGTERM); ``init``: the model to fine-tune (see :func:`prepare_root`). ``root`` defaults to a new temporary folder (printed first); each
    output line goes to ``echo`` (default: stdout). ``python``: the command that runs a module
    (``MODULE ARGS`` appended), default ``python -m``; the CLI passes one that quiets
    TensorFlow's start-up first. Raises ``ValueError`` for bad inputs."""
    say = echo or (lambda line: print(line, flush=True))
    root = prepare_root(data_dir, root, hyperparameters, init)
    say(f"training root: {root}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SM_") and k != "LG_SM_ROOT"}
    env["PYTHONUNBUFFERED"] = "1"
    proc = subprocess.Popen(
        [*(python or [sys.executable, "-m"]), ENTRY_MODULE, "--root", str(root)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    )
    try:
        for line in proc.stdout:
            say(line.rstrip("\n"))
        return proc.wait()
    except BaseException:
        proc.terminate()  # e.g. Ctrl-C: the entry point checkpoints and exits
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
        raise
    finally:
        if proc.stdout:
            proc.stdout.close()
