"""The results commands against a live embedded run, as a user drives them: `up` (here in a
thread), then `submit --wait`, `jobs`, `results`, `map` and `retry` through the CLI, with the
real enumerator handler, real worker processes and the shipped model."""

from __future__ import annotations

import csv
import io

import pytest
from conftest import SAMPLE_POLYGON, geojson_bytes, run_cli

from looking_glass.local.deployment import resolve_embedded

pytestmark = pytest.mark.e2e


def test_submit_wait_results_map_and_retry_on_a_live_embedded_run(embedded_up, capsys):
    tmp, state = embedded_up
    aoi = tmp / "kigali-tiny.geojson"
    aoi.write_bytes(geojson_bytes(SAMPLE_POLYGON))
    code, out, err = run_cli(capsys, "submit", str(aoi), "--wait", "--timeout", "240")
    assert code == 0, err
    job = out.strip()
    assert "COMPLETE" in err

    code, out, _ = run_cli(capsys, "jobs")
    assert job in out and "COMPLETE" in out and "kigali-tiny" in out

    code, out, _ = run_cli(capsys, "results", job, "--format", "csv")
    tiles = list(csv.DictReader(io.StringIO(out)))
    assert tiles and all(r["status"] == "done" for r in tiles)
    code, out, _ = run_cli(capsys, "results", job, "--format", "csv", "--totals")
    total = float(next(csv.DictReader(io.StringIO(out)))["building_area_m2"])
    assert total > 0 and total == pytest.approx(sum(float(r["building_area_m2"]) for r in tiles), abs=0.01)

    code, out, _ = run_cli(capsys, "results", job, "--zoom", "15", "--format", "csv")
    rolled = list(csv.DictReader(io.StringIO(out)))
    assert sum(float(r["building_area_m2"]) for r in rolled) == pytest.approx(total, abs=0.01)
    assert sum(int(r["tiles_done"]) for r in rolled) == len(tiles)

    code, out, err = run_cli(capsys, "map", job, "--out", str(tmp / "map"))
    assert code == 0, err
    assert (tmp / "map" / "map.png").stat().st_size > 10_000 and (tmp / "map" / "map.html").is_file()

    # a finished job has nothing to retry
    code, out, _ = run_cli(capsys, "retry", job)
    assert code == 0 and "0 tiles enqueued" in out
    assert resolve_embedded(state).kind == "embedded"
