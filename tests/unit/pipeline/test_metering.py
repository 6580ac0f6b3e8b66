"""Request metering: DynamoDB item sizes and write units as DynamoDB bills them, SQS billed
requests, counted on real botocore clients (answered by botocore's Stubber, no network)."""

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from looking_glass.pipeline.metering import RequestMeter, item_bytes, updated_item, value_bytes
from looking_glass.pricing import request_usd_per_million_tiles


def test_item_sizes_follow_dynamodbs_rules_by_hand():
    # names 6 + 1 + 2 + 4 + 1; "abc" 3; 12345: 5 digits -> 3 + 1 = 4; NS {1, 22}: 2 + 2;
    # L [1, "x"]: 3 + (1 + 2) + (1 + 1) = 8; BOOL 1
    item = {"job_id": {"S": "abc"}, "n": {"N": "12345"}, "ns": {"NS": ["1", "22"]},
            "list": {"L": [{"N": "1"}, {"S": "x"}]}, "b": {"BOOL": True}}
    assert item_bytes(item) == 14 + 3 + 4 + 4 + 8 + 1
    assert value_bytes({"N": "0.001"}) == 2 and value_bytes({"N": "-120.500"}) == 3  # 1, 1205
    assert value_bytes({"M": {"ab": {"S": "xyz"}}}) == 3 + 1 + 2 + 3
    with pytest.raises(ValueError, match="not a DynamoDB attribute value type"):
        value_bytes({"Q": "?"})


def client(service):
    return boto3.client(service, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")


def test_write_units_of_batches_transactions_and_updates_and_billed_sqs_requests():
    ddb, sqs = client("dynamodb"), client("sqs")
    meter = RequestMeter().watch(ddb, sqs)
    small = {"pk": {"S": "a" * 98}}  # 2 + 98 = 100 bytes: 1 unit
    big = {"pk": {"S": "b" * 1100}}  # 1102 bytes: 2 units
    key = {"pk": {"S": "job"}}
    with Stubber(ddb) as stub:
        stub.add_response("batch_write_item", {"UnprocessedItems": {}})
        stub.add_response("transact_write_items", {})
        # The job record as it was (1,500 bytes), which the meter asked for: 2 units.
        stub.add_response("update_item", {"Attributes": {**key, "pad": {"S": "p" * (1500 - 6 - 3)}}})
        stub.add_response("batch_get_item", {"Responses": {}})
        stub.add_response("batch_get_item", {"Responses": {}})
        ddb.batch_write_item(RequestItems={"t": [{"PutRequest": {"Item": small}}, {"PutRequest": {"Item": big}}]})
        ddb.transact_write_items(TransactItems=[
            {"Put": {"TableName": "t", "Item": small}},
            {"Update": {"TableName": "t", "Key": key, "UpdateExpression": "ADD n :one",
                        "ExpressionAttributeValues": {":one": {"N": "1"}}}},
        ])
        ddb.update_item(TableName="t", Key=key, UpdateExpression="SET s = :s",
                        ExpressionAttributeValues={":s": {"S": "x"}})
        ddb.batch_get_item(RequestItems={"t": {"Keys": [key, small], "ConsistentRead": True}})
        ddb.batch_get_item(RequestItems={"t": {"Keys": [key, small]}})  # eventually consistent: half
    asked = []

    def size_of(table, k):
        asked.append((table, k))
        return 1500  # the job record: 2 units

    # puts: 1 + 2 (batch) + 2 * 1 (in the transaction); the job record 2 * 2 (transaction) + 2
    assert meter.dynamodb_wru(size_of) == 3 + 2 + 4 + 2
    assert asked == [("t", key)]  # each updated item sized once
    assert meter.rru == 3
    with Stubber(sqs) as stub:
        stub.add_response("send_message", {"MessageId": "1", "MD5OfMessageBody": "x"})
        stub.add_response("delete_message", {})
        sqs.send_message(QueueUrl="https://q", MessageBody="x" * (70 * 1024))  # two 64 KB chunks
        sqs.delete_message(QueueUrl="https://q", ReceiptHandle="r")
    assert meter.sqs_billed == 3
    assert meter.requests("sqs") == 2 and meter.requests("dynamodb", frozenset({"BatchWriteItem"})) == 1


def test_the_usd_of_measured_requests_by_hand():
    # 0.02 PUTs x 0.005 USD / 1000 x 1e6 = 0.10; 1.07 WRU x 0.625 / 1e6 x 1e6 = 0.66875;
    # 0.05 SQS x 0.40 = 0.02; 0.02 GETs x 0.0004 x 1000 = 0.008
    got = request_usd_per_million_tiles(0.02, 1.07, 0.05, s3_gets_per_tile=0.02)
    assert got == pytest.approx(0.10 + 0.66875 + 0.02 + 0.008)


def test_an_update_is_billed_by_the_larger_of_the_item_before_and_after_by_hand():
    """UpdateItem as a tile pack is written: the meter asks for the item as it was (ALL_OLD) and
    applies the update to it. Sizes by hand: key "pk" + "pack" = 6 bytes; "t0" + a 894-byte
    string = 896: 902 bytes before."""
    ddb = client("dynamodb")
    meter = RequestMeter().watch(ddb)
    key = {"pk": {"S": "pack"}}
    before = {**key, "t0": {"S": "a" * 894}}
    assert item_bytes(before) == 902
    grow = {":v": {"S": "b" * 200}}  # SET t1 = 200 bytes: 902 + 2 + 200 = 1,104 after: 2 units
    sent = []
    ddb.meta.events.register("before-call.dynamodb.UpdateItem", lambda params, **_: sent.append(params))
    with Stubber(ddb) as stub:
        stub.add_response("update_item", {"Attributes": before})
        stub.add_response("update_item", {"Attributes": updated_item(before, key, "SET #t = :v", {"#t": "t1"}, grow)})
        stub.add_response("update_item", {})  # no item before: the key and t0 = 200 bytes, 1 unit
        stub.add_client_error("update_item", "ConditionalCheckFailedException",
                              modeled_fields={"Item": {**key, "t0": {"S": "c" * 2100}}})  # 2,108 bytes: 3 units
        stub.add_client_error("update_item", "ConditionalCheckFailedException")  # no item: 1 unit
        stub.add_client_error("update_item", "ValidationException")  # not billed
        ddb.update_item(TableName="t", Key=key, UpdateExpression="SET #t = :v", ExpressionAttributeNames={"#t": "t1"},
                        ExpressionAttributeValues=grow)
        assert meter.put_wru == 2
        ddb.update_item(TableName="t", Key=key, UpdateExpression="REMOVE #t", ExpressionAttributeNames={"#t": "t1"})
        assert meter.put_wru == 2 + 2  # 1,104 before, 902 after: the larger
        ddb.update_item(TableName="t", Key=key, UpdateExpression="SET t0 = :v", ExpressionAttributeValues=grow)
        assert meter.put_wru == 4 + 1
        for expression in ("SET t0 = :v", "SET t0 = :v", "SET t0 = :v"):
            with pytest.raises(ClientError):
                ddb.update_item(TableName="t", Key=key, UpdateExpression=expression, ExpressionAttributeValues=grow,
                                ConditionExpression="attribute_not_exists(t0)")
    assert meter.put_wru == 5 + 3 + 1 and meter.updates == []
    assert all(p["ReturnValues"] == "ALL_OLD" and p["ReturnValuesOnConditionCheckFailure"] == "ALL_OLD" for p in sent)


def test_updates_the_meter_cannot_apply_are_sized_by_the_caller():
    ddb = client("dynamodb")
    meter = RequestMeter().watch(ddb)
    key = {"pk": {"S": "job"}}
    with Stubber(ddb) as stub:
        stub.add_response("update_item", {"Attributes": key})
        stub.add_response("update_item", {"Attributes": key})
        ddb.update_item(TableName="t", Key=key, UpdateExpression="SET a.b = :v", ExpressionAttributeValues={":v": {"N": "1"}})
        ddb.update_item(TableName="t", Key=key, UpdateExpression="SET a = :v", ExpressionAttributeValues={":v": {"N": "1"}},
                        ReturnValues="UPDATED_NEW")  # the caller's own ReturnValues: not sized here
    assert meter.put_wru == 0 and meter.dynamodb_wru(lambda table, k: 3000) == 3 + 3


def test_updated_item_applies_set_remove_add_and_delete_by_hand():
    key = {"pk": {"S": "j"}}
    item = {**key, "n": {"N": "5"}, "ns": {"NS": ["1", "2"]}, "gone": {"S": "x"}}
    values = {":one": {"N": "1.5"}, ":ns": {"NS": ["2", "3"]}, ":rm": {"NS": ["1", "2", "3"]}, ":s": {"S": "new"}}
    assert updated_item(item, key, "SET #a = :s REMOVE gone ADD n :one, ns :ns", {"#a": "a"}, values) == {
        **key, "n": {"N": "6.5"}, "ns": {"NS": ["1", "2", "3"]}, "a": {"S": "new"}}
    assert updated_item(item, key, "DELETE ns :rm", None, values) == {**key, "n": {"N": "5"}, "gone": {"S": "x"}}
    assert updated_item({}, key, "ADD n :one", None, values) == {**key, "n": {"N": "1.5"}}
    for unsupported in ("SET a = if_not_exists(a, :s)", "SET a = :s + :s", "SET a.b = :s", "SET a = :missing", "a = :s"):
        assert updated_item(item, key, unsupported, None, values) is None, unsupported


def test_batch_reads_are_billed_by_the_size_of_each_item_read_by_hand():
    """A 5,000-byte pack read eventually consistent: 2 started 4 KB blocks, half: 1 unit; a key
    with no item: 0.5; strongly consistent, a 9,000-byte item 3 and a missing one 1; a key left
    unprocessed: nothing (it is asked again)."""
    ddb = client("dynamodb")
    meter = RequestMeter().watch(ddb)
    big, huge = {"pk": {"S": "a" * (5000 - 2)}}, {"pk": {"S": "b" * (9000 - 2)}}
    missing, later = {"pk": {"S": "none"}}, {"pk": {"S": "later"}}
    with Stubber(ddb) as stub:
        stub.add_response("batch_get_item", {"Responses": {"t": [big]}})
        stub.add_response("batch_get_item", {"Responses": {"t": [huge]}, "UnprocessedKeys": {"t": {"Keys": [later]}}})
        ddb.batch_get_item(RequestItems={"t": {"Keys": [big, missing]}})
        assert meter.rru == 1 + 0.5
        ddb.batch_get_item(RequestItems={"t": {"Keys": [huge, missing, later], "ConsistentRead": True}})
    assert meter.rru == 1.5 + 3 + 1
