"""Where a training job reads and writes: the SageMaker container layout under one root.

``input/config/hyperparameters.json``, ``input/data/{train,validation,init}``, ``model/``,
``checkpoints/``, ``output/tensorboard``, ``output/data`` and ``output/failure``; see
:mod:`looking_glass.training.entrypoint` for what each holds.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_ROOT = "/opt/ml"


@dataclass(frozen=True)
class Paths:
    """The job's paths (all absolute or relative to the working directory, never created here)."""

    root: Path
    hyperparameters: Path
    train: Path
    validation: Path
    model: Path
    checkpoints: Path
    tensorboard: Path
    output_data: Path
    failure: Path
    init: Path = None  # the fine-tuning channel (a starting model), see looking_glass.training.init

    @classmethod
    def resolve(cls, root: str | None, environ=os.environ) -> "Paths":
        """Paths under ``root``; with no root given, ``LG_SM_ROOT`` or /opt/ml, where the
        Dockerfile's SM_* variables override single paths."""
        explicit = root or environ.get("LG_SM_ROOT")
        base = Path(explicit or DEFAULT_ROOT)
        env = {} if explicit else environ

        def pick(var, default):
            return Path(env[var]) if env.get(var) else default

        config = pick("SM_INPUT_CONFIG_DIR", base / "input" / "config")
        return cls(
            root=base,
            hyperparameters=config / "hyperparameters.json",
            train=pick("SM_CHANNEL_TRAIN", base / "input" / "data" / "train"),
            validation=pick("SM_CHANNEL_VALIDATION", base / "input" / "data" / "validation"),
            model=pick("SM_MODEL_DIR", base / "model"),
            checkpoints=pick("SM_CHECKPOINT_DIR", base / "checkpoints"),
            tensorboard=base / "output" / "tensorboard",
            output_data=pick("SM_OUTPUT_DATA_DIR", base / "output" / "data"),
            failure=base / "output" / "failure",
            init=pick("SM_CHANNEL_INIT", base / "input" / "data" / "init"),
        )
