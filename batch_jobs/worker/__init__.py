"""The inference worker's Batch entry point (``main.py``, which runs :mod:`looking_glass.pipeline.worker_main`)."""
