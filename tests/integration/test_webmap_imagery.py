"""The map over GeoTIFF imagery, from ``file://``, in headless Chromium: the imagery is written
beside the page (no ``s3://``/``.tif`` URL asked of the browser), the same tiles scaled at every
zoom, tiles outlined with a faint fill, and a scale bar on a solid background."""

from __future__ import annotations

import contextlib
import os
import re
import uuid
from decimal import Decimal

from conftest import SPACENET_SAMPLE, run_cli
from test_results_cli import FULL, add_job
from test_results_cli import env as env  # noqa: F401 - the fixture
from test_webmap import CHROMIUM, browser_or_skip

from looking_glass.grid import quadkey
from looking_glass.local.deployment import write_state
from looking_glass.pipeline.store import RUNNING, TileResult

IMAGE = str(SPACENET_SAMPLE / "image.tif")
X0, Y0 = 69_555, 105_034  # a 2x2 block inside the SpaceNet Atlanta sample image


def geotiff_job(env) -> str:
    """A job over the image whose tiles the workers read from the GeoTIFF (their ``imagery``)."""
    store = env["store"]
    job_id = uuid.uuid4().hex[:24]
    store.create_job(job_id, {"status": RUNNING, "name": "atlanta", "tiles_total": 4, "zoom": 18, "warnings": []})
    results = [
        TileResult(x=X0 + dx, y=Y0 + dy, z=18, quadkey=quadkey(X0 + dx, Y0 + dy, 18), status="done",
                   building_area_m2=Decimal(100 * (dx + 2 * dy)), building_pixels=0,
                   valid_fraction=Decimal("0.5") if (dx, dy) == (0, 0) else Decimal("1"))
        for dx in range(2) for dy in range(2)
    ]
    store.record_tiles(job_id, results, {"imagery": IMAGE, "model_id": "m"})
    store.try_complete(job_id)
    return job_id


def test_geotiff_imagery_is_drawn_from_files_beside_the_page_at_every_zoom(env, capsys, tmp_path):
    browser_or_skip()
    write_state(env["state"], os.environ["AWS_ENDPOINT_URL"], env["res"], None)  # no tile server: a GeoTIFF job
    geotiff_job(env)
    out = tmp_path / "map"
    code, stdout, err = run_cli(capsys, "map", "atlanta", "--out", str(out))
    assert code == 0, err
    assert "4 zoom-18 features" in stdout and "imagery tiles in" in stdout
    page = (out / "map.html").read_text()
    assert '"template":"map_tiles/{z}/{x}/{y}.webp"' in page and IMAGE not in page  # attribution: the file's name
    assert all((out / "map_tiles" / "18" / str(X0 + dx) / f"{Y0 + dy}.webp").is_file() for dx in range(2) for dy in range(2))

    with _opened(out / "map.html") as (pg, seen):
        shown = {}
        for zoom in (18, 17, 16, 14):
            _zoom_to(pg, zoom)
            shown[zoom] = pg.evaluate("Array.from(document.querySelectorAll('img.leaflet-tile-loaded')).map(i => i.src)")
        paths = pg.evaluate("Array.from(document.querySelectorAll('path.lg-tile'))"
                            ".map(p => [p.getAttribute('fill-opacity'), p.getAttribute('stroke-width')])")
        dashed = pg.evaluate("document.querySelectorAll('path.lg-tile[stroke-dasharray]').length")
        legend = pg.locator(".lg-legend").inner_text()
        scale_bg = pg.evaluate("getComputedStyle(document.querySelector('.leaflet-control-scale-line')).backgroundColor")
        pg.screenshot(path=str(tmp_path / "geotiff.png"))
    errors, requests = seen["errors"], seen["requests"]
    assert errors == []
    assert requests and all(u.startswith(("file:", "data:")) for u in requests), requests
    min_zoom = min(int(d.name) for d in (out / "map_tiles").iterdir())
    assert min_zoom <= 17
    for zoom, srcs in shown.items():
        # the written tiles of that zoom (or of the coarsest level written, scaled): never a gap
        assert srcs and all("/map_tiles/" in s for s in srcs), (zoom, srcs)
        assert {int(re.search(r"/map_tiles/(\d+)/", s).group(1)) for s in srcs} == {max(zoom, min_zoom)}
    assert len(paths) == 4 and all(float(f) <= 0.2 and float(w) >= 1 for f, w in paths)
    assert dashed == 1 and "partly without imagery" in legend  # the one tile half outside the imagery
    assert "no done tile" not in legend  # all four are done: no entry for what is not drawn
    alpha = re.match(r"rgba?\((\d+), (\d+), (\d+)(?:, ([\d.]+))?\)", scale_bg)
    assert alpha and float(alpha.group(4) or 1) >= 0.85 and min(int(alpha.group(i)) for i in (1, 2, 3)) >= 240


def test_a_missing_geotiff_is_one_clear_error(env, capsys, tmp_path):
    write_state(env["state"], os.environ["AWS_ENDPOINT_URL"], env["res"], None)
    job = geotiff_job(env)
    code, _, err = run_cli(capsys, "map", job, "--out", str(tmp_path / "m"), "--imagery", str(tmp_path / "gone.tif"))
    assert code == 2 and "error: --imagery" in err and "gone.tif: no such file" in err and err.count("\n") == 1


def test_no_imagery_under_the_map_is_said(env, capsys, tmp_path, monkeypatch):
    from looking_glass.results import webmap

    write_state(env["state"], os.environ["AWS_ENDPOINT_URL"], env["res"], None)
    geotiff_job(env)
    kigali = add_job(env, FULL, name="kigali")  # tiles far from the Atlanta image
    code, out, err = run_cli(capsys, "map", kigali, "--out", str(tmp_path / "k"), "--imagery", IMAGE)
    assert code == 0 and "imagery tiles" not in out
    assert "warning: no imagery under map.html" in err and not (tmp_path / "k" / "map_tiles").exists()
    monkeypatch.setattr(webmap, "MAX_BASEMAP_TILES", 3)  # the Atlanta job has 4 tiles
    code, out, err = run_cli(capsys, "map", "atlanta", "--out", str(tmp_path / "a"))
    assert code == 0 and "more than" in err and not (tmp_path / "a" / "map_tiles").exists()


def test_an_s3_geotiff_is_read_with_the_deployments_session(env, tmp_path):
    from looking_glass.results.webmap import make_map

    job = geotiff_job(env)
    s3, bucket = env["session"].client("s3"), env["res"].trigger_bucket
    s3.upload_file(IMAGE, bucket, "imagery/atlanta.tif")
    out = make_map(env["store"], job, tmp_path / "m", f"s3://{bucket}/imagery/atlanta.tif", session=env["session"])
    assert out["imagery_shown"] and out["imagery_tiles"] > 4
    assert (tmp_path / "m" / "map_tiles" / "18" / str(X0) / f"{Y0}.webp").stat().st_size > 1000


@contextlib.contextmanager
def _opened(page_path):
    """Open ``page_path`` from ``file://`` in headless Chromium (800x600) and wait until the map
    says it is ready; yields the page and what it has done so far: ``seen["requests"]`` (every
    URL asked for), ``seen["failed"]`` (requests that failed) and ``seen["errors"]`` (console
    errors and uncaught page errors), filled while the page stays open."""
    sync_playwright = browser_or_skip()
    seen: dict[str, list[str]] = {"requests": [], "failed": [], "errors": []}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            pg = browser.new_page(viewport={"width": 800, "height": 600})
            pg.on("console", lambda m: seen["errors"].append(m.text) if m.type == "error" else None)
            pg.on("pageerror", lambda e: seen["errors"].append(str(e)))
            pg.on("request", lambda r: seen["requests"].append(r.url))
            pg.on("requestfailed", lambda r: seen["failed"].append(r.url))
            pg.goto(page_path.as_uri())
            pg.wait_for_function("window.lookingGlass && window.lookingGlass.ready", timeout=20_000)
            yield pg, seen
        finally:
            browser.close()


def _zoom_to(pg, zoom: int) -> None:
    """Set the open map to ``zoom`` at once (no animation) and wait until the network is idle."""
    pg.evaluate(f"map.setZoom({zoom}, {{animate: false}})")
    pg.wait_for_timeout(300)
    pg.wait_for_load_state("networkidle")


def _loaded_at_zooms(page_path, zooms) -> tuple[list[str], list[str], list[str]]:
    """Open ``page_path`` (:func:`_opened`) and set each of ``zooms`` in turn: the URLs asked
    for, the requests that failed, and the console/page errors."""
    with _opened(page_path) as (pg, seen):
        for zoom in zooms:
            _zoom_to(pg, zoom)
    return seen["requests"], seen["failed"], seen["errors"]


def test_gap_html_asks_only_for_the_imagery_tiles_written_like_map_html(env, tmp_path):
    # The user's case: `map JOB --compare MAPPED` over a GeoTIFF job; gap.html used a plain
    # tileLayer and asked for zoom-16/17 tiles around the job that were never written.
    from looking_glass.results.gap import JobGap
    from looking_glass.results.gapmap import write_gap_map
    from looking_glass.results.webmap import make_map

    browser_or_skip()
    job = geotiff_job(env)
    out = tmp_path / "gap"
    made = make_map(env["store"], job, out, IMAGE)
    layer, png = made["imagery_layer"], made["png_layout"]
    assert layer["available"]
    # map.png: the zoom-18 imagery read back from the files written, and a caption saying what it is
    assert png["imagery_zoom"] == 18 and "image.tif" in png["caption"] and "4 of 4 tiles done" in png["caption"]
    rows = [{"quadkey": quadkey(X0 + dx, Y0 + dy, 18), "z": 18, "x": X0 + dx, "y": Y0 + dy,
             "predicted_area_m2": 100.0, "predicted_count": 1, "mapped_area_m2": 50.0 * dx, "mapped_count": dx,
             "unmapped_area_m2": 100.0 - 50 * dx, "completeness": 0.5 * dx, "rank": 1 + dx}
            for dx in range(2) for dy in range(2)]
    summary = {"predicted_count": 4, "mapped_count": 2, "completeness": 0.25}
    gap = JobGap("tile", rows, summary, unmapped=[], skipped=[])
    write_gap_map(gap, out, layer, "gap")
    zooms = (20, 19, 18, 17, 16)
    for name in ("map.html", "gap.html"):
        requests, failed, errors = _loaded_at_zooms(out / name, zooms)
        files = [u for u in requests if u.startswith("file:") and not u.endswith(".html")]
        assert files and all("/map_tiles/" in u for u in files), (name, files)
        missing = [u for u in files if not os.path.exists(u.removeprefix("file://"))]
        assert missing == [] and failed == [] and errors == [], (name, missing, failed, errors)
        asked = {re.search(r"/map_tiles/(.+)\.webp", u).group(1) for u in files}
        assert asked <= set(layer["available"]), name
