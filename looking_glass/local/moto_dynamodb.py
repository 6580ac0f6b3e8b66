"""The embedded AWS endpoint's DynamoDB (moto) answering one request at a time, as DynamoDB
applies each write to an item atomically.

moto's ``UpdateItem`` reads the item, copies it and writes it back without a lock, so two
requests on one item at the same moment (two units writing tiles of the same pack, which
DynamoDB serializes) can lose one's attributes, or fail copying an item the other is changing.
Tile packs (``looking_glass.pipeline.packs``) rely on DynamoDB's per-item atomicity, so every
moto server the project starts (the embedded run, the tests' and the benchmarks') serializes its
DynamoDB requests with :func:`serialize_dynamodb`. moto runs in one Python process under the
GIL, so this costs it little concurrency.

It also measures items as DynamoDB does, once per request instead of once per attribute: moto's
400 KB check sums the size of every attribute, nested maps walked, for each one set (quadratic in a
pack's 80 attributes, about 0.1 s an UpdateItem of a full pack), with a limit of its own (405,000
bytes) and sizes of its own (a number as its digits, no overhead for maps). Here a new item (PutItem,
BatchWriteItem, a transaction's Put) and the item an update makes are each sized once, with
``looking_glass.pipeline.metering.item_bytes`` (DynamoDB's rules: every attribute's UTF-8 name plus
its value, maps and lists 3 bytes and 1 a member, numbers by their significant digits), and refused
above DynamoDB's limit, 400 KB = 409,600 bytes, as DynamoDB refuses them (``ValidationException``:
"Item size has exceeded the maximum allowed size", "Item size to update has exceeded the maximum
allowed size"); a refused update leaves the item's top-level attributes as they were (moto changes
the item in place; a change inside a nested map, list or set, which this project never makes, would
stay, as in moto). ``python -m looking_glass.local.moto_dynamodb -H HOST
-p PORT`` is ``python -m moto.server`` with it.
"""

from __future__ import annotations

import base64
import sys
import threading

_LOCK = threading.RLock()
ITEM_LIMIT = 400 * 1024  # DynamoDB's item size limit, names and values (1 KB = 1,024 bytes)


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
    _measure_items_once()


def _typed(value) -> dict:
    """A moto ``DynamoType`` as the typed value DynamoDB's API gives (``{"M": {...}}``, binaries as
    bytes), without the copies moto's own ``to_regular_json`` makes."""
    if value.type == "M":
        return {"M": {k: _typed(v) for k, v in value.value.items()}}
    if value.type == "L":
        return {"L": [_typed(v) for v in value.value]}
    if value.type == "B" and isinstance(value.value, str):  # moto keeps some binaries base64-encoded
        return {"B": base64.b64decode(value.value)}
    return {value.type: value.value}


def _too_large(item) -> bool:
    """Whether a moto ``Item`` is over DynamoDB's limit, sized by DynamoDB's rules."""
    from looking_glass.pipeline.metering import item_bytes

    return item_bytes({name: _typed(value) for name, value in item.attrs.items()}) > ITEM_LIMIT


def _measure_items_once() -> None:
    """moto's items sized once per new item and once per update (module docstring), not once per
    attribute set."""
    from moto.dynamodb.exceptions import ItemSizeTooLarge
    from moto.dynamodb.models.dynamo_type import Item, LimitedSizeDict
    from moto.dynamodb.parsing.executors import UpdateExpressionExecutor

    LimitedSizeDict.__setitem__ = dict.__setitem__  # the whole item is sized below instead
    new_item, execute = Item.__init__, UpdateExpressionExecutor.execute

    def __init__(self, *args, **kwargs):
        new_item(self, *args, **kwargs)
        if _too_large(self):
            raise ItemSizeTooLarge  # moto answers ValidationException, as DynamoDB does

    def execute_update(self, node=None):
        if node is not None:  # a node of the expression: the update goes on
            return execute(self, node)
        before = dict(self.item.attrs)  # top-level: this project's updates SET, REMOVE and ADD no deeper
        execute(self)
        if _too_large(self.item):
            dict.clear(self.item.attrs)
            dict.update(self.item.attrs, before)
            raise ItemSizeTooLarge  # moto's update_item answers "Item size to update has exceeded ..."

    Item.__init__ = __init__
    UpdateExpressionExecutor.execute = execute_update


def main(argv: list[str] | None = None) -> None:
    """``moto.server``'s command line, with DynamoDB serialized."""
    from moto.server import main as moto_main

    serialize_dynamodb()
    moto_main(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    main()
