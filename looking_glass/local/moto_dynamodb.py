"""The embedded AWS endpoint's DynamoDB (moto) answering one request at a time, as DynamoDB
applies each write to an item atomically.

moto's ``UpdateItem`` reads the item, copies it and writes it back without a lock, so two
requests on one item at the same moment (two units writing tiles of the same pack, which
DynamoDB serializes) can lose one's attributes, or fail copying an item the other is changing.
Tile packs (``looking_glass.pipeline.packs``) rely on DynamoDB's per-item atomicity, so every
moto server the project starts (the embedded run, the tests' and the benchmarks') serializes its
DynamoDB requests with :func:`serialize_dynamodb`. moto runs in one Python process under the
GIL, so this costs it little concurrency.

It also stops moto re-measuring the whole item on every attribute an update sets (its 400 KB
check sums the size of every attribute, nested maps walked, for each one set: quadratic in a
pack's 80 attributes, about 0.1 s an UpdateItem of a full pack). Each value is still refused
when it alone is over the limit; the items of this project stay far below it (a full pack is
about 5 KB, a job record's AOI is capped by ``looking_glass.tiling.aoi``). ``python -m looking_glass.local.moto_dynamodb -H HOST
-p PORT`` is ``python -m moto.server`` with it.
"""

from __future__ import annotations

import sys
import threading

_LOCK = threading.RLock()
_MOTO_ITEM_LIMIT = 405000  # moto's own figure for DynamoDB's 400 KB


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
    _measure_values_only()


def _measure_values_only() -> None:
    """moto's item dict checks the size of the value set, not of the whole item each time."""
    from moto.dynamodb.exceptions import ItemSizeTooLarge
    from moto.dynamodb.models.dynamo_type import DynamoType, LimitedSizeDict
    from moto.dynamodb.models.utilities import bytesize

    def __setitem__(self, key, value):
        size = bytesize(key) + (value.size() if type(value) is DynamoType else bytesize(str(value)))
        if size > _MOTO_ITEM_LIMIT:
            raise ItemSizeTooLarge
        dict.__setitem__(self, key, value)

    LimitedSizeDict.__setitem__ = __setitem__


def main(argv: list[str] | None = None) -> None:
    """``moto.server``'s command line, with DynamoDB serialized."""
    from moto.server import main as moto_main

    serialize_dynamodb()
    moto_main(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    main()
