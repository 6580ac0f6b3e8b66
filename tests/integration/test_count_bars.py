"""The bars of the commands that read a job's tiles (``export``, ``results --compare``): drawn
once the number of done tiles is known, counting exactly those tiles, never "0tile"."""

from __future__ import annotations

import io
import re

from test_export_buildings import ALL, JOB, put_job

from looking_glass.pipeline.progress import CountBar
from looking_glass.results.buildings import export_buildings
from looking_glass.results.gap import job_gap


def _lines(out: io.StringIO) -> list[str]:
    return [line for line in re.split(r"[\r\n]", out.getvalue()) if line.strip()]


def test_the_compare_and_export_bars_count_the_done_tiles_they_read(aws, tmp_path):
    store, s3, bucket = put_job(aws, ALL)
    mapped = tmp_path / "mapped.geojson"
    mapped.write_text('{"type": "FeatureCollection", "features": []}')
    for desc, run in (
        ("compare", lambda bar: job_gap(store, s3, bucket, JOB, str(mapped), progress=bar)),
        ("export", lambda bar: export_buildings(store, s3, bucket, JOB, str(tmp_path / "b.geojson"), "geojson",
                                                progress=bar)),
    ):
        out = io.StringIO()
        bar = CountBar(desc, "tile", file=out, mininterval=0)
        run(bar)
        bar.close()
        lines = _lines(out)
        assert lines and all(line.startswith(desc) for line in lines)
        assert not re.search(r"(?<![\d.])0tile", out.getvalue())  # a count of no total (not a rate)
        assert re.search(r"\b0/6\b", lines[0]) and re.search(r"\b6/6\b", lines[-1]), lines
