"""Checkpoints of a training job, for spot training: save after every epoch, resume at start.

In ``checkpoints/`` (which SageMaker syncs to S3): ``<name>.keras`` (the full model, uncompiled),
``<name>.optimizer.npz`` (Adam's step count and moment estimates) and ``state.json`` (completed
epochs, metric history, config, the files). Names are ``epoch-NNNN`` after an epoch and
``interrupted-epoch-NNNN-batch-BBBBB`` after a signal; only the newest pair is kept.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from looking_glass.training.errors import TrainingError
from looking_glass.training.layout import Paths


def read_state(paths: Paths) -> dict | None:
    """The checkpoint's ``state.json`` (``None`` if there is none).

    Raises :class:`TrainingError` if it is unreadable or names a model file that is missing.
    """
    path = paths.checkpoints / "state.json"
    if not path.exists():
        return None
    try:
        state = json.loads(path.read_text())
        (paths.checkpoints / state["model"]).stat()
    except (ValueError, KeyError, OSError) as e:
        raise TrainingError(
            f"checkpoint {path} is unreadable or incomplete ({e}); remove {paths.checkpoints} to start over"
        ) from None
    return state


def save_checkpoint(model, paths: Paths, state: dict, name: str) -> None:
    """``name``.keras + ``name``.optimizer.npz, then state.json (atomically), then older files go.

    ``state`` is the run's record (completed epochs, history, ...); the file names and the save
    time are added to it.
    """
    import keras

    ckpt = paths.checkpoints
    ckpt.mkdir(parents=True, exist_ok=True)
    plain = keras.Model(model.input, model.output, name=model.name)  # uncompiled: no custom loss needed to load
    plain.save(ckpt / f"{name}.keras")
    opt = {f"{i:05d}|{v.path.split('/', 1)[-1]}": np.asarray(v) for i, v in enumerate(model.optimizer.variables)}
    np.savez(ckpt / f"{name}.optimizer.npz", **opt)
    state = {**state, "model": f"{name}.keras", "optimizer": f"{name}.optimizer.npz",
             "saved": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    tmp = ckpt / "state.json.tmp"
    tmp.write_text(json.dumps(state, indent=1))
    os.replace(tmp, ckpt / "state.json")
    for old in ckpt.iterdir():
        if old.is_file() and old.name not in (state["model"], state["optimizer"], "state.json") and (
            old.name.endswith(".keras") or old.name.endswith(".optimizer.npz")
        ):
            old.unlink()


def restore_optimizer(model, path: Path) -> str:
    """Load Adam's variables saved by save_checkpoint (learning rate excepted). Returns a note."""
    optimizer = model.optimizer
    optimizer.build(model.trainable_variables)
    with np.load(path) as z:
        saved = {k.split("|", 1)[1]: z[k] for k in sorted(z.files)}
    current = {v.path.split("/", 1)[-1]: v for v in optimizer.variables}
    if set(saved) != set(current) or any(tuple(saved[k].shape) != tuple(current[k].shape) for k in saved):
        return "optimizer state not restored (its variables differ from this model's); Adam starts afresh"
    for key, var in current.items():
        if key != "learning_rate":
            var.assign(saved[key])
    return f"optimizer state restored (iteration {int(saved.get('iteration', 0))})"
