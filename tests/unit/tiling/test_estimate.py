"""The cost estimate: compute, requests, NAT and storage from the list prices, with the per-tile
requests of the results store. Expected figures are worked out by hand in the comments."""

import numpy as np
import pytest
from conftest import REPO_ROOT

from looking_glass.tiling.aoi import parse_aoi
from looking_glass.tiling.cover import tile_runs
from looking_glass.tiling.estimate import (
    DESIGN_REQUESTS_PER_TILE,
    RequestsPerTile,
    design_requests_per_tile,
    estimate,
)

EQUATOR_ROW = 2**17  # the first zoom-18 row south of the equator


def test_the_design_makes_one_put_and_one_small_transaction_per_unit_of_64_tiles():
    # 1 PUT / 64 tiles; packs: 8 row writes of 8 x 59 + 149 = 621 bytes onto 240, billed by the
    # pack after each: 861, 1482, 2103, 2724, 3345, 3966, 4587, 5208 bytes = 1 + 2 + 3 + 3 + 4 + 4
    # + 5 + 6 = 28 WRU / 64 tiles = 0.4375, + (2 items x 2 WRU) / 64 = 0.5; (receive + delete +
    # 1/10 send) / 64
    assert DESIGN_REQUESTS_PER_TILE == RequestsPerTile(s3_requests=0.015625, dynamodb_wru=0.5, sqs_requests=0.0328125)
    assert design_requests_per_tile(1) == RequestsPerTile(1.0, 4.4375, 2.1)


def test_a_million_and_a_quarter_tiles_priced_part_by_part():
    # 5 rows of 256,000 tiles = 1,280,000 tiles = 20,000 units of 64.
    runs = np.array([[EQUATOR_ROW + i, 0, 256_000] for i in range(5)], dtype=np.int64)
    e = estimate(runs, 18)
    assert (e.tiles, e.sqs_messages, e.sqs_send_requests) == (1_280_000, 20_000, 2_000)
    # 1,280,000 / 50,000 per worker (the default) = 25.6: 26 workers.
    assert e.workers == 26
    # 1,280,000 / 200 / 3600 = 1.777778 h + 26 x 0.15 h = 5.677778 h; x USD 0.526 = 2.986511
    assert e.worker_hours == 5.678 and e.compute_usd == 2.9865
    # 1,280,000 / 20,000 per worker = 64 workers, capped at max_workers (50).
    assert estimate(runs, 18, tiles_per_worker=20_000).workers == 50
    # S3: 20,000 PUTs x USD 0.005 / 1,000 = 0.10. DynamoDB: 1,280,000 x 0.4375 + 20,000 x 4 = 640,000
    # WRU x USD 0.625 / million = 0.40. SQS: 20,000 x 2.1 = 42,000 requests x USD 0.40 / million = 0.0168.
    assert (e.s3_usd, e.dynamodb_usd, e.sqs_usd, e.requests_usd) == (0.1, 0.4, 0.0168, 0.5168)
    # NAT: 1,280,000 x 25,000 B = 32 GB x USD 0.045 = 1.44
    assert e.nat_usd == 1.44
    # 2.986511 + 0.5168 + 1.44 = 4.943311
    assert e.total_usd == 4.9433
    # S3: 1,280,000 x 8,192 B = 10.48576 GB x 0.023 = 0.241172; DynamoDB: a full pack (240 + 8 x 149
    # + 64 x 59 + 100 overhead = 5,308 B) / 64 = 82.9375 B a tile x 1,280,000 = 0.10616 GB x 0.25
    # = 0.02654; together 0.267712
    assert e.storage_usd_per_month == 0.2677


def test_fewer_larger_workers_start_fewer_times():
    runs = np.array([[EQUATOR_ROW + i, 0, 256_000] for i in range(5)], dtype=np.int64)
    # 1,280,000 / 100,000 = 12.8: 13 workers; 1.777778 h + 13 x 0.15 h = 3.727778 h x USD 0.526 = 1.960811
    e = estimate(runs, 18, tiles_per_worker=100_000)
    assert (e.workers, e.worker_hours, e.compute_usd) == (13, 3.728, 1.9608)


def test_measured_requests_and_own_prices_replace_the_defaults():
    runs = np.array([[EQUATOR_ROW, 0, 100_000], [EQUATOR_ROW + 1, 0, 100_000]], dtype=np.int64)
    # 200,000 tiles at 1 PUT, 2 WRU, 0.5 SQS each: 0.2 x (5.00 + 1.25 + 0.20) = USD 1.29
    e = estimate(runs, 18, tiles_per_second=2, price_per_hour=3.6, nat_bytes_per_tile=0,
                 requests_per_tile=RequestsPerTile(1, 2, 0.5))
    assert (e.s3_usd, e.dynamodb_usd, e.sqs_usd, e.requests_usd, e.nat_usd) == (1.0, 0.25, 0.04, 1.29, 0.0)
    # 4 workers (50,000 tiles each); 200,000 / 2 / 3600 = 27.777778 h + 4 x 0.15 h = 28.377778 h
    # x USD 3.6 = 102.16; + 1.29 = 103.45
    assert (e.workers, e.compute_usd, e.total_usd) == (4, 102.16, 103.45)
    assert e.requests_per_tile == {"s3_requests": 1, "dynamodb_wru": 2, "sqs_requests": 0.5}


@pytest.mark.parametrize("kwargs", [{"tiles_per_second": 0}, {"price_per_hour": -1}, {"tiles_per_message": 0},
                                    {"nat_bytes_per_tile": -1}, {"tiles_per_worker": 0}])
def test_bad_parameters_are_refused(kwargs):
    with pytest.raises(ValueError, match="must be"):
        estimate(np.array([[EQUATOR_ROW, 0, 10]], dtype=np.int64), 18, **kwargs)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_bad_unit_sizes_are_refused(bad):
    with pytest.raises(ValueError, match="tiles_per_message must be an integer >= 1"):
        design_requests_per_tile(bad)


def _cost_table_rows() -> dict[str, list[str]]:
    text = (REPO_ROOT / "docs" / "deploy.md").read_text()
    section = text[text.index("## Cost per 1,000 km2"):]
    return {cells[0]: cells for line in section.splitlines() if line.startswith("| `square_")
            for cells in [[c.strip() for c in line.strip("|").split("|")]]}


@pytest.mark.parametrize("lat", [0, 45, 60])
def test_the_docs_cost_table_is_what_estimate_prints(lat):
    """docs/deploy.md's table must be reproducible with the command it names (a changed price,
    assumption or request count that is not carried into the docs fails here)."""
    from looking_glass import pricing

    name = f"square_1000km2_lat{lat}"
    runs = tile_runs(parse_aoi((REPO_ROOT / "benchmarks" / "data" / f"{name}.geojson").read_bytes()).geometry, 18)
    fast, slow = (estimate(runs, 18, tiles_per_second=tps, price_per_hour=pricing.ASSUMED_G4DN_XLARGE_SPOT_USD_PER_HOUR)
                  for tps in (pricing.ASSUMED_GPU_TILES_PER_SECOND, pricing.MEASURED_CPU_TILES_PER_SECOND))
    on_demand = [estimate(runs, 18, tiles_per_second=tps) for tps in (pricing.ASSUMED_GPU_TILES_PER_SECOND,
                                                                     pricing.MEASURED_CPU_TILES_PER_SECOND)]
    public = estimate(runs, 18, price_per_hour=pricing.ASSUMED_G4DN_XLARGE_SPOT_USD_PER_HOUR, nat_bytes_per_tile=0)
    assert _cost_table_rows()[f"`{name}`"] == [
        f"`{name}`", f"{lat}°", f"{fast.tiles:,}", f"{fast.tiles_area_km2:,.0f}", str(fast.workers),
        f"{fast.worker_hours:.2f} / {slow.worker_hours:.2f}",
        f"{fast.compute_usd:.3f} / {slow.compute_usd:.3f}",
        f"{fast.requests_usd:.3f}", f"{fast.nat_usd:.3f}",
        f"**{fast.total_usd:.3f}** / {slow.total_usd:.3f}",
        f"{public.total_usd:.3f}",
        f"{on_demand[0].total_usd:.3f} / {on_demand[1].total_usd:.3f}",
        f"{fast.storage_usd_per_month:.3f}",
    ]
