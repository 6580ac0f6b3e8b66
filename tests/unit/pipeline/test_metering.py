"""Request metering: DynamoDB item sizes and write units as DynamoDB bills them, SQS billed
requests, counted on real botocore clients (answered by botocore's Stubber, no network)."""

import boto3
import pytest
from botocore.stub import Stubber

from looking_glass.pipeline.metering import RequestMeter, item_bytes, value_bytes
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
        stub.add_response("update_item", {})
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
