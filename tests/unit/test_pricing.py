"""AWS list prices and the request arithmetic: every expected figure below was worked out by hand
from the published prices (S3 PUT USD 0.005 and GET 0.0004 per 1,000; DynamoDB USD 0.625 per
million write units, 0.125 per million read units; SQS USD 0.40 per million requests; NAT USD 0.045
per GB; S3 USD 0.023 and DynamoDB USD 0.25 per GB-month), not by calling the formula again."""

import math

import pytest

from looking_glass import pricing


def test_the_prices_are_the_published_us_east_1_list_prices():
    # Pinned so that a changed price is a reviewed change (and the docs' tables are redone).
    assert (pricing.S3_PUT_USD_PER_1000, pricing.S3_GET_USD_PER_1000) == (0.005, 0.0004)
    assert (pricing.DYNAMODB_WRU_USD_PER_MILLION, pricing.DYNAMODB_RRU_USD_PER_MILLION) == (0.625, 0.125)
    assert pricing.SQS_USD_PER_MILLION_REQUESTS == 0.40 and pricing.SQS_BILLED_CHUNK_BYTES == 65536
    assert pricing.NAT_GATEWAY_USD_PER_GB == 0.045 and pricing.G4DN_XLARGE_ON_DEMAND_USD_PER_HOUR == 0.526
    assert pricing.REGION == "us-east-1" and pricing.PRICES_AS_OF == "2025"


def test_every_list_price_names_its_source_page():
    prices = {name for name in pricing.__all__ if "_USD_" in name and not name.startswith(("ASSUMED_", "MEASURED_"))}
    assert prices == set(pricing.PRICE_SOURCES)
    assert all(url.startswith("https://aws.amazon.com/") and "/pricing/" in url for url in pricing.PRICE_SOURCES.values())


def test_today_one_put_and_two_write_units_per_tile_cost_about_6_usd_per_million_tiles():
    # S3: 1 PUT/tile x 1e6 tiles = 1,000 x 1,000 PUTs x USD 0.005 = USD 5.00
    # DynamoDB: 2 WRU/tile x 1e6 = 2 million WRU x USD 0.625 = USD 1.25
    # SQS: 0.5 requests/tile x 1e6 = 0.5 million x USD 0.40 = USD 0.20
    parts = pricing.request_usd_breakdown(1, 2, 0.5)
    assert parts == pytest.approx({"s3": 5.00, "dynamodb": 1.25, "sqs": 0.20})
    assert pricing.request_usd_per_million_tiles(1, 2, 0.5) == pytest.approx(6.45)


def test_one_object_per_64_tile_unit():
    # S3: 1/64 PUT per tile = 15,625 PUTs per million tiles = 15.625 x USD 0.005 = USD 0.078125
    # DynamoDB: 1 + 4/64 = 1.0625 million WRU x USD 0.625 = USD 0.6640625
    # SQS: 2.1/64 = 0.0328125 million requests x USD 0.40 = USD 0.013125
    got = pricing.request_usd_per_million_tiles(1 / 64, 1.0625, 2.1 / 64)
    assert got == pytest.approx(0.078125 + 0.6640625 + 0.013125) == pytest.approx(0.7553125)


def test_gets_and_read_units_at_their_own_prices():
    # 2 GETs/tile: 2,000 x 1,000 GETs x USD 0.0004 = USD 0.80; 4 RRU/tile: 4 million x USD 0.125 = USD 0.50
    parts = pricing.request_usd_breakdown(0, 0, 0, s3_gets_per_tile=2, dynamodb_rru_per_tile=4)
    assert parts == pytest.approx({"s3": 0.80, "dynamodb": 0.50, "sqs": 0.0})


@pytest.mark.parametrize("item_bytes, transactional, units", [(1, False, 1), (1024, False, 1), (1025, False, 2), (1025, True, 4), (500, True, 2)])
def test_dynamodb_bills_a_write_unit_per_started_kilobyte_and_twice_in_a_transaction(item_bytes, transactional, units):
    assert pricing.dynamodb_write_units(item_bytes, transactional) == units


@pytest.mark.parametrize("payload, requests", [(0, 1), (200, 1), (65536, 1), (65537, 2), (262144, 4)])
def test_sqs_bills_a_request_per_started_64_kb_chunk(payload, requests):
    assert pricing.sqs_billed_requests(payload) == requests


def test_nat_and_storage():
    # 42,789 tiles x 25,000 B = 1.069725 GB x USD 0.045 = USD 0.048137625
    assert pricing.nat_usd(42_789 * 25_000) == pytest.approx(0.048137625)
    # 2 GB in S3 (USD 0.046) + 4 GB in DynamoDB (USD 1.00) a month
    assert pricing.storage_usd_per_month(2e9, 4e9) == pytest.approx(1.046)


@pytest.mark.parametrize("bad", [-1, math.nan, math.inf, True, "1"])
def test_bad_counts_are_refused_with_the_argument_named(bad):
    with pytest.raises(ValueError, match="dynamodb_wru_per_tile must be a finite number >= 0"):
        pricing.request_usd_per_million_tiles(0, bad, 0)
    with pytest.raises(ValueError, match="s3_gets_per_tile"):
        pricing.request_usd_breakdown(0, 0, 0, s3_gets_per_tile=bad)
    with pytest.raises(ValueError, match="nbytes"):
        pricing.nat_usd(bad)
    with pytest.raises(ValueError, match="dynamodb_bytes"):
        pricing.storage_usd_per_month(0, bad)


@pytest.mark.parametrize("bad", [0, -5, 1.5, True])
def test_bad_sizes_are_refused(bad):
    with pytest.raises(ValueError, match="item_bytes must be an integer >= 1"):
        pricing.dynamodb_write_units(bad)
    if bad != 0:
        with pytest.raises(ValueError, match="payload_bytes must be an integer >= 0"):
            pricing.sqs_billed_requests(bad)
