"""The embedded AWS endpoint's DynamoDB (moto) answering one request at a time, as DynamoDB
applies each write to an item atomically.

moto's ``UpdateItem`` reads the item, copies it and writes it back without a lock, so two
requests on one item at the same moment (two units writing tiles of the same pack, which
DynamoDB serializes) can lose one's attributes, or fail copying an item the other is changing.
Tile packs (``looking_glass.pipeline.packs``) rely on DynamoDB's per-item atomicity, so every
moto server the project starts (the embedded run, the tests' and the benchmarks') serializes its
DynamoDB requests with :func:`serialize_dynamodb`. moto runs in one Python process under the
GIL, so this costs it little concurrency. ``python -m looking_glass.local.moto_dynamodb -H HOST
-p PORT`` is ``python -m moto.server`` with it.
"""

from __future__ import annotations

import sys
import threading

_LOCK = threading.RLock()


def serialize_dynamodb() -> None:
    """Make this process's moto DynamoDB handle one request at a time (idempotent)."""
    from moto.dynamodb.responses import DynamoHandler

    original = DynamoHandler.call_action
    if getattr(original, "serialized", False):
        return

    def call_action(self):
        with _LOCK:
            return original(self)

    call_action.serialized = True
    DynamoHandler.call_action = call_action


def main(argv: list[str] | None = None) -> None:
    """``moto.server``'s command line, with DynamoDB serialized."""
    from moto.server import main as moto_main

    serialize_dynamodb()
    moto_main(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    main()
