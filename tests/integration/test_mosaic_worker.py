"""The worker on a mosaic of two real GeoTIFFs (written here): each tile result stores the
capture date(s) of the images that gave it pixels and its valid fraction."""

from __future__ import annotations

import sys
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

from test_worker import JOB, settings_for, start_job, tiny_segmenter  # noqa: F401 - a fixture

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "imagery"))
from test_mosaic import TILE_SIZE, X, Y, write_tif  # noqa: E402

from looking_glass.pipeline.store import COMPLETE  # noqa: E402


def test_the_worker_stores_capture_dates_and_coverage_of_a_mosaic(aws, tmp_path, tiny_segmenter):  # noqa: F811
    from looking_glass.pipeline.worker import Worker

    session, names, resources = aws
    old = write_tif(tmp_path / "old.tif", 100, 0, TILE_SIZE + TILE_SIZE // 2, date="2020:01:02 10:00:00")
    new = write_tif(tmp_path / "new.tif", 200, 0, TILE_SIZE // 2, date="2023:06:01 09:30:00")
    store, total = start_job(session, names, resources, [[Y, X - 1, X + 2]])
    settings = replace(settings_for(""), imagery_geotiff=f"{old},{new}")
    Worker(session, resources, settings, tiny_segmenter).run()
    items = {int(i["x"]): i for i in store.tile_items(JOB)}
    assert store.get_job(JOB)["status"] == COMPLETE and total == 3
    assert items[X - 1]["status"] == "no_imagery" and "capture_date" not in items[X - 1]
    assert items[X]["capture_date"] == "2023-06-01,2020-01-02" and items[X]["valid_fraction"] == Decimal(1)
    # X + 1: only the old image's west half reaches it.
    assert items[X + 1]["capture_date"] == "2020-01-02"
    assert abs(items[X + 1]["valid_fraction"] - Decimal("0.5")) < Decimal("0.01")
    assert items[X]["imagery"] == f"{old},{new}"
