"""Count the AWS requests that boto3 clients really send, and what DynamoDB and SQS bill for them.

:class:`RequestMeter` hooks botocore's ``before-parameter-build`` event (the API call as made) on the clients it is given, so every
request is counted as it is sent (retries by botocore itself are not seen; the worker's own
retries are). DynamoDB write request units follow DynamoDB's rule (one per started KB of the item
written, twice inside a transaction; :func:`looking_glass.pricing.dynamodb_write_units`) with the
item's size computed as DynamoDB sizes it (:func:`item_bytes`). A write to an item that exists is
billed by the larger of its size before and after; a conditional write whose condition fails,
by the size of the item as it is (at least one unit). An ``UpdateItem`` is sized exactly: the
meter asks for the item as it was (``ReturnValues`` and ``ReturnValuesOnConditionCheckFailure``
``ALL_OLD``, which DynamoDB answers without charge, when the caller asked for none), reads it in
botocore's ``after-call`` event and applies the update to it (:func:`updated_item`: ``SET``,
``REMOVE``, ``ADD`` and ``DELETE`` of top-level attributes). Updates it cannot size so (inside
a transaction, or another expression) are noted by key and sized by the caller
(:meth:`RequestMeter.dynamodb_wru`), e.g. from the item at the end. Used by
``benchmarks/worker_benchmark.py --json``.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from decimal import Decimal

from looking_glass.pricing import dynamodb_write_units, sqs_billed_requests

__all__ = ["RequestMeter", "item_bytes", "updated_item", "value_bytes"]

READ_UNIT_BYTES = 4096  # a read request unit reads up to 4 KB of an item
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


_CLAUSE = re.compile(r"\b(SET|REMOVE|ADD|DELETE)\b", re.IGNORECASE)


def updated_item(item: dict, key: dict, expression: str, names: dict | None = None,
                 values: dict | None = None) -> dict | None:
    """The typed item an UpdateItem of ``expression`` makes of ``item`` (typed; ``{}`` when there
    is none, then the ``key`` is its start): ``SET name = :value``, ``REMOVE name``, ``ADD name
    :value`` (a number added, a set joined) and ``DELETE name :set`` of top-level attributes
    (``#names`` resolved through ``names``). None for anything else (a nested path, a function,
    arithmetic), which the caller must size another way."""
    names, values = names or {}, values or {}
    out = dict(item) if item else dict(key)
    parts = _CLAUSE.split(expression)
    if parts[0].strip():
        return None
    for verb, body in zip(parts[1::2], parts[2::2]):
        for action in (a.strip() for a in body.split(",")):
            verb_u = verb.upper()
            tokens = action.replace("=", " = ").split()
            name = names.get(tokens[0], tokens[0]) if tokens else ""
            if not name or "(" in action or "." in tokens[0] or "[" in tokens[0]:
                return None
            if verb_u == "REMOVE" and len(tokens) == 1:
                out.pop(name, None)
            elif verb_u == "SET" and len(tokens) == 3 and tokens[1] == "=" and tokens[2] in values:
                out[name] = values[tokens[2]]
            elif verb_u in ("ADD", "DELETE") and len(tokens) == 2 and tokens[1] in values:
                merged = _add(out.get(name), values[tokens[1]], verb_u == "DELETE")
                if merged is None:
                    out.pop(name, None)
                else:
                    out[name] = merged
            else:
                return None
    return out


def _add(old: dict | None, value: dict, delete: bool) -> dict | None:
    """ADD (or DELETE) of a typed value to an attribute's typed value (None: the attribute goes)."""
    (kind, v), = value.items()
    if kind == "N":
        return {"N": str(Decimal(old["N"]) + Decimal(v) if old else Decimal(v))}
    members = list(old[kind]) if old else []
    members = [m for m in members if m not in v] if delete else members + [m for m in v if m not in members]
    return {kind: members} if members else None


class RequestMeter:
    """Requests sent by the clients given to :meth:`watch`: per service and operation
    (``calls``), DynamoDB write units of puts and of the UpdateItems it sized (``put_wru``),
    the keys of the updates it could not size (``updates``: (table, key as a tuple,
    transactional) each), billed SQS requests (``sqs_billed``) and DynamoDB read request units
    (``rru``: BatchGetItem by the size of each item that comes back, one per query page and
    GetItem; half that when eventually consistent)."""

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
            client.meta.events.register("after-call.dynamodb.UpdateItem", self._after_update)
            client.meta.events.register("after-call.dynamodb.BatchGetItem", self._after_batch_get)
        return self

    def _before_call(self, model, params, context=None, **_):
        service = model.service_model.service_name
        with self._lock:
            self.calls[(service, model.name)] += 1
            if service == "dynamodb" and model.name == "UpdateItem" and "ReturnValues" not in params:
                # The item as it was comes back with the answer (free of charge): sized there.
                params["ReturnValues"] = "ALL_OLD"
                params.setdefault("ReturnValuesOnConditionCheckFailure", "ALL_OLD")
                if context is not None:
                    context["metered_update"] = dict(params)
                    return
            if service == "dynamodb" and model.name == "BatchGetItem" and context is not None:
                context["metered_get"] = params["RequestItems"]  # sized by the items that come back
                return
            if service == "dynamodb":
                self._dynamodb(model.name, params)
            elif service == "sqs":
                self._sqs(model.name, params)

    def _after_batch_get(self, parsed, context=None, **_):
        """A BatchGetItem's answer: each item asked for read as a GetItem, one unit per started
        4 KB of the item that came back (an item that does not exist: one), half that when
        eventually consistent; keys left unprocessed are not billed (they are asked again)."""
        requests = (context or {}).pop("metered_get", None)
        if requests is None or "Error" in parsed:
            return
        rru = 0.0
        for table, request in requests.items():
            found = parsed.get("Responses", {}).get(table, [])
            unprocessed = len(parsed.get("UnprocessedKeys", {}).get(table, {}).get("Keys", []))
            units = sum(-(-item_bytes(it) // READ_UNIT_BYTES) or 1 for it in found)
            units += len(request["Keys"]) - len(found) - unprocessed
            rru += units * (1 if request.get("ConsistentRead") else 0.5)
        with self._lock:
            self.rru += rru

    def _after_update(self, parsed, context=None, **_):
        """An UpdateItem's answer: billed by the larger of the item before and after it, or, when
        its condition failed, by the item as it is (at least one unit either way)."""
        params = (context or {}).pop("metered_update", None)
        if params is None:
            return
        error = parsed.get("Error", {}).get("Code")
        before = parsed.get("Item" if error else "Attributes") or {}
        if error:
            failed = error == "ConditionalCheckFailedException"  # other errors write nothing and are not billed
            wru = dynamodb_write_units(max(1, item_bytes(before))) if failed else 0
        else:
            after = updated_item(before, params["Key"], params["UpdateExpression"],
                                 params.get("ExpressionAttributeNames"), params.get("ExpressionAttributeValues"))
            if after is None:  # an expression not sized here: by the caller's size_of
                with self._lock:
                    self.updates.append((params["TableName"], _key(params["Key"]), False))
                return
            wru = dynamodb_write_units(max(item_bytes(before), item_bytes(after)))
        with self._lock:
            self.put_wru += wru

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
