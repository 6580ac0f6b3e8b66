"""AWS Batch entry point of the inference worker, kept for ``python batch_jobs/worker/main.py``.

The worker's process is :mod:`looking_glass.pipeline.worker_main` (``python -m
looking_glass.pipeline.worker_main``, what the image and the embedded run start); this file only
calls it. Exit codes: 0 drained or stopped, 2 bad settings, 3 model cannot be loaded.
"""

from __future__ import annotations

import sys

from looking_glass.pipeline.worker_main import main

if __name__ == "__main__":
    sys.exit(main())
