"""Count the AWS requests that boto3 clients really send, and what DynamoDB and SQS bill for them.

:class:`RequestMeter` hooks botocore's ``before-parameter-build`` event (the API call as made) on the clients it is given, so every
request is counted as it is sent (retries by botocore itself are not seen; the worker's own
retries are). DynamoDB write request units follow DynamoDB's rule (one per started KB of the item
written, twice inside a transaction; :func:`looking_glass.pricing.dynamodb_write_units`) with the
item's size computed as DynamoDB sizes it (:func:`item_bytes`). An update's size is that of the
item it updates, which the request does not carry: the meter notes the key and the caller
supplies the item's size (:meth:`RequestMeter.dynamodb_wru`). Used by
``benchmarks/worker_benchmark.py --json``.
"""

from __future__ import annotations

import threading
from collections import Counter
from decimal import Decimal

from looking_glass.pricing import dynamodb_write_units, sqs_billed_requests

__all__ = ["RequestMeter", "item_bytes", "value_bytes"]

# S3 operations billed at the GET price; every other S3 request is billed at the PUT price.
S3_GET_CLASS = frozenset({"GetObject", "HeadObject", "GetObjectAttributes"})


def _number_bytes(text: str) -> int:
    """DynamoDB's size of a number: about one byte per two significant digits, plus one."""
    digits = Decimal(text).normalize().as_tuple().digits
    return (len(digits) + 1) // 2 + 1


def value_bytes(value: dict) -> int:
    """DynamoDB's size of one typed attribute value (``{"S": ...}``, ``{"N": ...}``, ...) in bytes:
    strings and binaries their length, numbers :func:`_number_bytes`, booleans and nulls 1,
    sets the sum of their members, lists and maps 3 plus 1 and the size of each member (and for
    maps each member's name). ValueError for a value of another type."""
    (kind, v), = value.items()
    if kind == "S":
        return len(v.encode())
    if kind == "N":
        return _number_bytes(v)
    if kind == "B":
        return len(v)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(s.encode()) for s in v)
    if kind == "NS":
        return sum(_number_bytes(n) for n in v)
    if kind == "BS":
        return sum(len(b) for b in v)
    if kind == "L":
        return 3 + sum(1 + value_bytes(x) for x in v)
    if kind == "M":
        return 3 + sum(1 + len(k.encode()) + value_bytes(x) for k, x in v.items())
    raise ValueError(f"not a DynamoDB attribute value type: {kind!r}")


def item_bytes(item: dict) -> int:
    """DynamoDB's size of a typed item: the UTF-8 length of each attribute name plus the size of
    its value (:func:`value_bytes`)."""
    return sum(len(name.encode()) + value_bytes(v) for name, v in item.items())


class RequestMeter:
    """Requests sent by the clients given to :meth:`watch`: per service and operation
    (``calls``), DynamoDB write units of puts (``put_wru``) and the keys of updates
    (``updates``: (table, key as a tuple, transactional) each), billed SQS requests
    (``sqs_billed``) and DynamoDB read request units (``rru``: reads of small items, one per
    item asked for and per query page, half that when eventually consistent)."""

    def __init__(self):
        self.calls: Counter = Counter()
        self.put_wru = 0
        self.updates: list[tuple[str, tuple, bool]] = []
        self.sqs_billed = 0
        self.rru = 0.0
        self._lock = threading.Lock()

    def watch(self, *clients) -> RequestMeter:
        """Count every request these boto3 clients send from now on; returns the meter."""
        for client in clients:
            client.meta.events.register("before-parameter-build.*.*", self._before_call)
        return self

    def _before_call(self, model, params, **_):
        service = model.service_model.service_name
        with self._lock:
            self.calls[(service, model.name)] += 1
            if service == "dynamodb":
                self._dynamodb(model.name, params)
            elif service == "sqs":
                self._sqs(model.name, params)

    def _dynamodb(self, op: str, params: dict) -> None:
        if op == "PutItem":
            self.put_wru += dynamodb_write_units(item_bytes(params["Item"]))
        elif op == "BatchWriteItem":
            for requests in params["RequestItems"].values():
                for r in requests:
                    # A delete is billed by the size of the item deleted: at least one unit.
                    self.put_wru += dynamodb_write_units(item_bytes(r["PutRequest"]["Item"])) if "PutRequest" in r else 1
        elif op == "TransactWriteItems":
            for action in params["TransactItems"]:
                (kind, body), = action.items()
                if kind == "Put":
                    self.put_wru += dynamodb_write_units(item_bytes(body["Item"]), transactional=True)
                else:  # Update, Delete, ConditionCheck: billed by the size of the item they touch
                    self.updates.append((body["TableName"], _key(body["Key"]), True))
        elif op in ("UpdateItem", "DeleteItem"):
            self.updates.append((params["TableName"], _key(params["Key"]), False))
        elif op == "BatchGetItem":  # half a unit for an eventually consistent read
            self.rru += sum(len(r["Keys"]) * (1 if r.get("ConsistentRead") else 0.5) for r in params["RequestItems"].values())
        elif op in ("GetItem", "Query", "Scan"):
            self.rru += 1 if params.get("ConsistentRead") else 0.5

    def _sqs(self, op: str, params: dict) -> None:
        if op == "SendMessage":
            self.sqs_billed += sqs_billed_requests(len(params["MessageBody"].encode()))
        elif op == "SendMessageBatch":
            self.sqs_billed += sqs_billed_requests(sum(len(e["MessageBody"].encode()) for e in params["Entries"]))
        else:
            self.sqs_billed += 1

    def requests(self, service: str, operations: frozenset | None = None, exclude: frozenset = frozenset()) -> int:
        """Requests sent to ``service`` (only ``operations`` if given, never those in ``exclude``)."""
        return sum(n for (s, op), n in self.calls.items()
                   if s == service and (operations is None or op in operations) and op not in exclude)

    def dynamodb_wru(self, size_of) -> int:
        """All DynamoDB write request units: puts as sent, and each update, delete or condition
        check billed by the size of the item it touched, ``size_of(table, key)`` (bytes, e.g. the
        item read back at the end; None when it no longer exists: then one unit)."""
        sizes: dict[tuple, int | None] = {}
        total = self.put_wru
        for table, key, transactional in self.updates:
            if (table, key) not in sizes:
                sizes[(table, key)] = size_of(table, {name: {kind: v} for name, (kind, v) in key})
            size = sizes[(table, key)] or 1
            total += dynamodb_write_units(size, transactional=transactional)
        return total


def _key(key: dict) -> tuple:
    """A typed DynamoDB key as a hashable tuple (``dict(...)`` gives it back)."""
    return tuple(sorted((name, tuple(v.items())[0]) for name, v in key.items()))
