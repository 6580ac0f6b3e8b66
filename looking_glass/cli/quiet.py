"""Quiet start-up: no TensorFlow, absl or oneDNN messages on a command's standard error.

TensorFlow 2.16+ prints its start-up lines (``oneDNN custom operations are on``, ``WARNING: All
log messages before absl::InitializeLog() ...``) from C++ while TensorFlow's first import loads its
shared libraries. They go straight to file descriptor 2 and ignore ``TF_CPP_MIN_LOG_LEVEL``, so
setting the environment is not enough: :func:`quiet_start_up` also points descriptor 2 at
``/dev/null`` for exactly the time of that first import (an import hook, so a command that never
loads TensorFlow pays nothing), and quiets the Python loggers (``absl``, ``tensorflow``) that log
warnings later. ``looking-glass -v`` skips all of it and shows everything again.

Anything that TensorFlow writes to standard error *while it imports* is dropped, including
another thread's output during those seconds; an import that fails still raises its exception.
"""

from __future__ import annotations

import importlib.machinery
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["QUIET_ENV", "quiet_start_up", "stderr_silenced"]

# C++ log levels: 2 keeps errors (a failing kernel, an unusable GPU) and drops INFO and WARNING.
QUIET_ENV = {"TF_CPP_MIN_LOG_LEVEL": "2"}
NOISY_MODULES = ("tensorflow",)  # top-level packages whose import prints on descriptor 2
NOISY_LOGGERS = ("absl", "tensorflow")


@contextmanager
def stderr_silenced() -> Iterator[None]:
    """Point file descriptor 2 (what C/C++ code writes to) at ``/dev/null`` inside the block,
    and back on the way out, also when the block raises."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


# The loader and finder below follow importlib's protocols without deriving from importlib.abc:
# importing that (it loads importlib.resources, tempfile, ...) and logging was a tenth of every
# command's start-up, and most commands never import TensorFlow.


def _quiet_loggers() -> None:
    """Raise the ``absl`` and ``tensorflow`` Python loggers to ERROR."""
    import logging

    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


class _QuietLoader:
    """The module's own loader, run with standard error silenced (and the noisy loggers quieted
    first); the module keeps its own loader afterwards (``__loader__`` and ``__spec__.loader``)."""

    def __init__(self, loader) -> None:
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        _quiet_loggers()
        try:
            with stderr_silenced():
                self._loader.exec_module(module)
        finally:
            module.__loader__ = self._loader
            if module.__spec__ is not None:
                module.__spec__.loader = self._loader

    def __getattr__(self, name):
        return getattr(self._loader, name)


class _QuietImportFinder:
    """Finds the first import of one of ``names`` with the usual path finder and hands it a
    loader that silences standard error; it leaves ``sys.meta_path`` once it has served each."""

    def __init__(self, names: tuple[str, ...]) -> None:
        self.pending = set(names)

    def find_spec(self, fullname, path, target=None):
        if fullname not in self.pending:
            return None
        self.pending.discard(fullname)
        if not self.pending and self in sys.meta_path:
            sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return spec
        spec.loader = _QuietLoader(spec.loader)
        return spec


def quiet_start_up(verbose: bool = False, modules: tuple[str, ...] = NOISY_MODULES) -> None:
    """Make this process (and the worker processes it starts) quiet about library start-up.

    Sets :data:`QUIET_ENV` (unless the environment already sets those variables), raises the
    ``absl`` and ``tensorflow`` Python loggers to ERROR (at once if logging is loaded or none of
    ``modules`` is left to import, else just before the first of them loads) and silences
    descriptor 2 while each of ``modules`` is first imported. With ``verbose`` it changes nothing.
    Call it before anything imports TensorFlow; modules already imported are left as they are.
    """
    if verbose:
        return
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    pending = tuple(m for m in modules if m not in sys.modules)
    if not pending or "logging" in sys.modules:
        _quiet_loggers()
    if pending and not any(isinstance(f, _QuietImportFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietImportFinder(pending))


def run_module_quietly(argv: list[str]) -> None:
    """``python -m looking_glass.cli.quiet MODULE [ARGS...]``: run ``MODULE`` as ``python -m``
    would, after :func:`quiet_start_up`. How the CLI starts a child process that loads
    TensorFlow (``train --local``'s training job), so the child is as quiet as the command;
    ``-v`` starts the module directly instead."""
    import runpy

    if not argv:
        raise SystemExit("usage: python -m looking_glass.cli.quiet MODULE [ARGS...]")
    quiet_start_up()
    sys.argv = [argv[0], *argv[1:]]
    runpy.run_module(argv[0], run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    run_module_quietly(sys.argv[1:])
