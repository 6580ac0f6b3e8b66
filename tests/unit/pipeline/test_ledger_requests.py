"""The requests the tile ledger sends, on a real botocore client answered by botocore's Stubber
(no network): which reads are strongly consistent, and how conflicting writes are retried.

These are narrow on purpose: moto answers every read strongly consistent and never reports a
transaction conflict, so what is checked here cannot be seen on the moto server."""

from __future__ import annotations

from decimal import Decimal

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import ANY, Stubber

from looking_glass.grid import quadkey
from looking_glass.imagery.status import TILE_DONE
from looking_glass.pipeline.ledger import LEDGER_SORT_PREFIX, TILE_LAYOUT, TILE_LAYOUT_ATTRIBUTE, tile_number
from looking_glass.pipeline.metering import RequestMeter
from looking_glass.pipeline.packs import pack_attributes, pack_of, pack_sort_key
from looking_glass.pipeline.store import ResultsStore, TileResult
from looking_glass.pipeline.table import marshal

JOB, TABLE = "feedfacefeedfacefeedface", "results"
PROV = {"model_id": "m", "model_version": "3", "zoom": 18, "processed_at": "2026-11-30T12:00:00+00:00"}


def client():
    return boto3.client("dynamodb", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")


def key(sort_key):
    return marshal({"job_id": JOB, "sort_key": sort_key})


def test_final_quadkeys_reads_the_ledgers_strongly_consistent_and_is_billed_for_it():
    """Packs may be stale (a tile is counted only after its pack write, and retry uncounts it in
    the transaction that removes it), ledgers may not: a stale ledger could call final a tile
    that retry has just removed and uncounted. The ledger read is billed a full unit."""
    r = TileResult(152_024, 131_472, 18, quadkey(152_024, 131_472, 18), TILE_DONE, Decimal(3), unit="u1")
    pack = {"job_id": JOB, "sort_key": pack_sort_key(pack_of(r.quadkey)), **pack_attributes(r.item(JOB, PROV))}
    job = {"job_id": JOB, "sort_key": "job", TILE_LAYOUT_ATTRIBUTE: TILE_LAYOUT}
    ledger = {"sort_key": LEDGER_SORT_PREFIX + "u1", "counted": {tile_number(r.x, r.y, r.z)}}
    ddb = client()
    meter = RequestMeter().watch(ddb)
    with Stubber(ddb) as stub:
        stub.add_response("batch_get_item", {"Responses": {TABLE: [marshal(pack), marshal(job)]}},
                          {"RequestItems": {TABLE: {"Keys": [key(pack["sort_key"]), key("job")],
                                                    "ConsistentRead": False}}})
        stub.add_response("batch_get_item", {"Responses": {TABLE: [marshal(ledger)]}},
                          {"RequestItems": {TABLE: {"Keys": [key(LEDGER_SORT_PREFIX + "u1")], "ConsistentRead": True,
                                                    "ProjectionExpression": ANY, "ExpressionAttributeNames": ANY}}})
        assert ResultsStore(ddb, TABLE).final_quadkeys(JOB, [r.quadkey]) == {r.quadkey}
        stub.assert_no_pending_responses()
    # The pack and the job record, eventually consistent (half a unit each), the ledger strongly (one).
    assert meter.rru == 0.5 + 0.5 + 1


def conflict(stub, times):
    for _ in range(times):
        stub.add_client_error("update_item", service_error_code="TransactionConflictException",
                              service_message="Transaction is ongoing for the item", http_status_code=400)


def test_updates_refused_by_a_transaction_in_progress_are_sent_again(monkeypatch):
    """A pack write, a job update (and so note_retry) and try_complete each refused once with
    TransactionConflictException (botocore does not retry it) go through on the second try."""
    waits = []
    monkeypatch.setattr("looking_glass.pipeline.ledger._backoff", waits.append)
    r = TileResult(152_024, 131_472, 18, quadkey(152_024, 131_472, 18), TILE_DONE, Decimal(3), unit="u1")
    ddb = client()
    store = ResultsStore(ddb, TABLE)
    with Stubber(ddb) as stub:
        for _ in range(4):
            conflict(stub, 1)
            stub.add_response("update_item", {})
        store._write_packs(JOB, [r.item(JOB, PROV)])
        assert store.note_retry(JOB, "tile 18/1/2: ConnectionError after 4 attempts")
        assert store.try_complete(JOB)
        assert store.reopen_job(JOB)
        stub.assert_no_pending_responses()
    assert waits == [0, 0, 0, 0]


def test_an_update_that_keeps_conflicting_fails_with_a_clear_error(monkeypatch):
    monkeypatch.setattr("looking_glass.pipeline.ledger._backoff", lambda attempt: None)
    ddb = client()
    with Stubber(ddb) as stub:
        conflict(stub, 10)
        with pytest.raises(RuntimeError, match=r"kept conflicting with a transaction after 10 attempts"):
            ResultsStore(ddb, TABLE).update_job(JOB, {"workers": 2})
        stub.assert_no_pending_responses()
    with Stubber(ddb) as stub:  # any other error at once, as before
        stub.add_client_error("update_item", service_error_code="ValidationException", http_status_code=400)
        with pytest.raises(ClientError, match="ValidationException"):
            ResultsStore(ddb, TABLE).update_job(JOB, {"workers": 2})


def test_a_job_record_put_refused_by_a_transaction_is_sent_again(monkeypatch):
    """Two deliveries of one S3 event: the second handler read no record, the first created it and
    its workers' ledger transactions now move it, so the second's conditional put is refused with
    TransactionConflictException (which raised out of the handler before). Sent again, it finds
    the record (a duplicate: False) or, with no record after all, writes it (True); 10 conflicts
    in a row are a clear error."""
    waits = []
    monkeypatch.setattr("looking_glass.pipeline.ledger._backoff", waits.append)
    ddb = client()
    store = ResultsStore(ddb, TABLE)

    def conflict_put(stub, times):
        for _ in range(times):
            stub.add_client_error("put_item", service_error_code="TransactionConflictException",
                                  service_message="Transaction is ongoing for the item", http_status_code=400)

    with Stubber(ddb) as stub:
        conflict_put(stub, 2)
        stub.add_client_error("put_item", service_error_code="ConditionalCheckFailedException", http_status_code=400)
        assert store.create_job(JOB, {"status": "ENQUEUEING"}) is False
        conflict_put(stub, 1)
        stub.add_response("put_item", {}, {"TableName": TABLE, "Item": ANY, "ConditionExpression": "attribute_not_exists(#pk)",
                                           "ExpressionAttributeNames": {"#pk": "job_id"}})
        assert store.create_job(JOB, {"status": "ENQUEUEING"}) is True
        stub.assert_no_pending_responses()
    assert waits == [0, 1, 0]
    monkeypatch.setattr("looking_glass.pipeline.ledger._backoff", lambda attempt: None)
    with Stubber(ddb) as stub:
        conflict_put(stub, 10)
        with pytest.raises(RuntimeError, match=rf"PutItem of {{'job_id': '{JOB}', 'sort_key': 'job'}} in table "
                                               r"results kept conflicting with a transaction after 10 attempts"):
            store.create_job(JOB, {"status": "ENQUEUEING"})
