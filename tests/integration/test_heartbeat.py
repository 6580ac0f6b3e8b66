"""The visibility heartbeat on a real SQS (moto): a held message stays invisible past its timeout."""

import time

from looking_glass.pipeline.heartbeat import VisibilityHeartbeat


def test_held_message_is_extended_and_released_one_is_not(aws):
    session, _, resources = aws
    sqs = session.client("sqs")
    url = resources.tile_queue_url
    sqs.send_message(QueueUrl=url, MessageBody="a")
    sqs.send_message(QueueUrl=url, MessageBody="b")
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=2, VisibilityTimeout=2)["Messages"]
    assert len(got) == 2
    beat = VisibilityHeartbeat(sqs, url, timeout_s=2)
    held, dropped = got
    beat.hold(held["ReceiptHandle"])
    beat.hold(dropped["ReceiptHandle"])
    beat.release(dropped["ReceiptHandle"])
    time.sleep(1.2)
    assert beat.extend_due() == 1  # past half the timeout: renewed for 2 s from now
    time.sleep(1.2)  # the original 2 s have passed
    visible = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=2, VisibilityTimeout=30).get("Messages", [])
    assert [m["Body"] for m in visible] == [dropped["Body"]]
