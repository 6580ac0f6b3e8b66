"""The embedded endpoint's DynamoDB sizes items as DynamoDB does (``looking_glass.local.moto_dynamodb``):
the whole item, attribute names included, against 400 KB = 409,600 bytes, for a put and for the
item an update makes; before, each value was checked alone, so an item of several large
attributes passed on moto and was refused by DynamoDB."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from looking_glass.local.moto_dynamodb import ITEM_LIMIT

KEY = {"job_id": {"S": "j"}, "sort_key": {"S": "s"}}
KEY_BYTES = len("job_id") + 1 + len("sort_key") + 1


@pytest.fixture
def table(aws):
    session, names, _ = aws
    return session.client("dynamodb"), names.results_table


def _put(ddb, table, **strings):
    ddb.put_item(TableName=table, Item={**KEY, **{name: {"S": text} for name, text in strings.items()}})


def test_an_item_of_exactly_400_kb_with_its_names_is_stored_and_one_byte_more_is_refused(table):
    ddb, name = table
    attribute = "a" * 500  # its name counts: 500 bytes
    _put(ddb, name, **{attribute: "x" * (ITEM_LIMIT - KEY_BYTES - 500)})
    with pytest.raises(ClientError, match="Item size has exceeded the maximum allowed size"):
        _put(ddb, name, **{attribute: "x" * (ITEM_LIMIT - KEY_BYTES - 499)})


def test_several_attributes_each_under_the_limit_are_refused_together(table):
    ddb, name = table
    with pytest.raises(ClientError, match="Item size has exceeded the maximum allowed size"):
        _put(ddb, name, **{f"v{i}": "x" * 100_000 for i in range(5)})
    assert "Item" not in ddb.get_item(TableName=name, Key=KEY)


def test_an_update_that_takes_the_item_over_the_limit_is_refused_and_changes_nothing(table):
    ddb, name = table
    _put(ddb, name, v0="x" * 300_000, v1="y")
    with pytest.raises(ClientError, match="Item size to update has exceeded the maximum allowed size"):
        ddb.update_item(TableName=name, Key=KEY, UpdateExpression="SET v2 = :big, v3 = :small REMOVE v1",
                        ExpressionAttributeValues={":big": {"S": "z" * 110_000}, ":small": {"S": "s"}})
    item = ddb.get_item(TableName=name, Key=KEY)["Item"]
    assert set(item) == {"job_id", "sort_key", "v0", "v1"} and item["v1"] == {"S": "y"}
    # A map's names and its 3 + 1-a-member bytes count too: 100 members of 1,000 bytes under 5-byte names
    members = {f"m{i:04d}": {"S": "x" * 1_000} for i in range(100)}  # 3 + 100 * (1 + 5 + 1,000) = 100,603 bytes
    ddb.update_item(TableName=name, Key=KEY, UpdateExpression="SET v1 = :m",
                    ExpressionAttributeValues={":m": {"M": members}})  # 300,000 + 2 + 100,603 + key: fits
    with pytest.raises(ClientError, match="Item size to update has exceeded"):
        ddb.update_item(TableName=name, Key=KEY, UpdateExpression="SET v2 = :s",
                        ExpressionAttributeValues={":s": {"S": "z" * (ITEM_LIMIT - KEY_BYTES - 300_002 - 100_605 - 1)}})
