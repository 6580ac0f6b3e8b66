"""`export` and `results --compare` on jobs of growing height: peak memory must not grow with the job.

Starts a moto server in a child process (so its own storage is not counted), fills it with jobs of
``--cols`` tiles by each of ``--rows`` rows (zoom 18; each row of tiles one work unit's result
object, as workers store them; random rectangles as buildings, many across tile edges), then for
each job, under Python's allocation tracer (``tracemalloc``, numpy arrays included):

- ``export_buildings`` to GeoJSON (what ``looking-glass export`` runs), and
- ``job_gap`` against a GeoPackage holding every other exported building (``results --compare``),
  with ``--zoom 14`` (rows: one per zoom-14 cell) and per tile (rows: one per tile, the output),

and prints the tiles, buildings, seconds and peak traced memory of each, with what the gap held at
once (``JobGap.held``). The jobs are read in bands of 16 rows (the default).

    .venv/bin/python benchmarks/export_memory_benchmark.py [--cols 4] [--rows 40 160] [--no-tile-rows]

The first 32 result objects read stay cached (``results.masks``), so compare jobs taller than 32
rows (one object per row here) to see the flat part.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid
from decimal import Decimal
from pathlib import Path

import boto3
import numpy as np

from looking_glass.grid import quadkey
from looking_glass.local.embedded import LOCAL_AWS_ENV
from looking_glass.outlines.exports import write_vector
from looking_glass.outlines.layers import read_polygons
from looking_glass.outlines.vectorize import stored_building_count
from looking_glass.pipeline.store import COMPLETE, ResultsStore, TileResult
from looking_glass.pipeline.unit_results import encode_unit_result, result_key
from looking_glass.results.buildings import export_buildings
from looking_glass.results.gap import job_gap
from looking_glass.runtime.resources import ResourceNames, create_embedded_resources

S = 256
X0, Y0 = 152_000, 131_456  # Y0 % 16 == 0: bands line up with the job's rows


def row_mosaic(cols: int, rng: np.random.Generator) -> np.ndarray:
    """One row of tiles (S rows, cols * S columns) plus the top of the next (buildings across the
    row edge are cut where the next row begins: each row is drawn on its own)."""
    m = np.zeros((S, cols * S), bool)
    for _ in range(12 * cols):
        h, w = rng.integers(8, 50, 2)
        r, c = rng.integers(0, S - h), rng.integers(0, cols * S - w)
        m[r:r + h, c:c + w] = True
    return m


def fill(store: ResultsStore, s3, bucket: str, job_id: str, cols: int, rows: int) -> None:
    rng = np.random.default_rng(rows)
    store.create_job(job_id, {"status": "RUNNING", "tiles_total": cols * rows})
    for dy in range(rows):
        m = row_mosaic(cols, rng)
        y = Y0 + dy
        tiles = [(X0 + dx, y, 18) for dx in range(cols)]
        qks = [quadkey(x, y, 18) for x, y, _ in tiles]
        cut = np.stack([m[:, dx * S:(dx + 1) * S] for dx in range(cols)])
        key = result_key(job_id, f"row{dy}", qks, whole_unit=True)
        s3.put_object(Bucket=bucket, Key=key, Body=encode_unit_result(job_id, f"row{dy}", tiles, qks, cut))
        results = [TileResult(x, y, 18, qk, "done", Decimal(0), 0, mask_key=key,
                              building_count=stored_building_count(cut[i], None, 18, x, y))
                   for i, ((x, y, _), qk) in enumerate(zip(tiles, qks, strict=True))]
        store.record_tiles(job_id, results, {"model_id": "benchmark"})
    store.try_complete(job_id)
    assert store.get_job(job_id)["status"] == COMPLETE


def traced(fn, *args, **kwargs):
    """(result, seconds, peak traced MiB) of ``fn(*args, **kwargs)``."""
    tracemalloc.start()
    started = time.perf_counter()
    try:
        out = fn(*args, **kwargs)
        return out, time.perf_counter() - started, tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cols", type=int, default=4)
    ap.add_argument("--rows", type=int, nargs="+", default=[40, 160])
    ap.add_argument("--no-tile-rows", action="store_true", help="compare with --zoom 14 only")
    args = ap.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.environ.update({**LOCAL_AWS_ENV, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"})
    try:
        session = boto3.session.Session()
        for _ in range(100):
            try:
                resources = create_embedded_resources(session, ResourceNames.for_prefix(f"m{uuid.uuid4().hex[:8]}"))
                break
            except Exception:  # noqa: BLE001 - the server is still starting
                time.sleep(0.2)
        store = ResultsStore(session.client("dynamodb"), resources.results_table)
        s3, bucket = session.client("s3"), resources.masks_bucket
        with tempfile.TemporaryDirectory() as tmp:
            for rows in args.rows:
                job_id = f"{rows:024x}"
                fill(store, s3, bucket, job_id, args.cols, rows)
                out = Path(tmp) / f"{rows}.geojson"
                report, secs, peak = traced(export_buildings, store, s3, bucket, job_id, str(out), "geojson")
                print(f"{args.cols} x {rows} = {args.cols * rows:,} tiles: export {report.buildings:,} buildings in "
                      f"{secs:.1f} s, peak traced memory {peak:.1f} MiB")
                mapped = Path(tmp) / f"{rows}.gpkg"
                write_vector(read_polygons(out).lonlat()[::2], mapped)
                pad = " " * len(f"{args.cols} x {rows} = {args.cols * rows:,} tiles")
                for zoom in (14, None)[:1 if args.no_tile_rows else 2]:
                    gap, secs, peak = traced(job_gap, store, s3, bucket, job_id, str(mapped), zoom=zoom)
                    print(f"{pad}  compare {'--zoom 14' if zoom else 'per tile '}: {len(gap.rows):,} rows, completeness "
                          f"{gap.summary['completeness']:.3f}, {gap.unmapped_count:,} not yet mapped, in {secs:.1f} s, "
                          f"peak traced memory {peak:.1f} MiB; held at once {gap.held}")
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
