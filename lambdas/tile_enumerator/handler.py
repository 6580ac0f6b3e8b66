"""Lambda handler for S3 ObjectCreated events on the trigger bucket (``stacks/ingest.py`` names
``lambdas.tile_enumerator.handler.handler``): the package's
:func:`looking_glass.pipeline.enumerator_lambda.handler`, re-exported."""

from __future__ import annotations

from looking_glass.pipeline.enumerator_lambda import handler

__all__ = ["handler"]
