"""SageMaker training entry point for the DeepLab V3+ building segmenter.

    python -m training.train [--root DIR] [--help-hyperparameters]

The training image (``training/Dockerfile``) runs this as ``train``. It is the SageMaker
contract only: read the paths of the container layout (``--root``, else ``$LG_SM_ROOT``, else
``/opt/ml`` with the ``SM_*`` overrides), install the SIGTERM/SIGINT stop flag, run the job, and
map its errors to ``output/failure`` and the exit code (0 done, 1 failed, 2 bad hyperparameters,
128 + the signal number when stopped). All of that is :func:`looking_glass.training.entrypoint.main`
(``python -m looking_glass.training.entrypoint`` is the same program, for an installed package);
the contract in full is that module's docstring.
"""

from __future__ import annotations

import sys

from looking_glass.training.entrypoint import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
