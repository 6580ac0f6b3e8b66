"""How a training job fails: its error types and the SageMaker exit codes they map to.

The entry point (:mod:`looking_glass.training.entrypoint`) writes the reason to
``output/failure`` and exits with :data:`EXIT_BAD_HYPERPARAMETERS` for a
:class:`HyperparameterError`, :data:`EXIT_FAILURE` for anything else; a signal exits with
128 + the signal number and no failure file.
"""

from __future__ import annotations

from looking_glass.errors import LookingGlassError

EXIT_FAILURE = 1
EXIT_BAD_HYPERPARAMETERS = 2


class HyperparameterError(LookingGlassError, ValueError):
    """A bad hyperparameter (exit code 2)."""

    exit_code = EXIT_BAD_HYPERPARAMETERS


class TrainingError(LookingGlassError, RuntimeError):
    """A problem with the inputs (channels, checkpoints) that is not a bug (exit code 1)."""

    exit_code = EXIT_FAILURE


class Interrupted(Exception):
    """SIGTERM/SIGINT arrived before training started."""


def log(message: str) -> None:
    """One progress line to stdout, flushed at once (SageMaker and ``train --local`` stream it)."""
    print(message, flush=True)
