"""`looking-glass map`: the PNG figure and the self-contained HTML page, the page tested in
headless Chromium (Debian's `chromium` package, driven by Playwright's Python client: no browser
download). It must load with no console errors, show one feature per tile (or rolled-up cell)
over the imagery, open a popup on click, and give a screenshot."""

from __future__ import annotations

import os
import re

import pytest
from conftest import CHROMIUM, browser_or_skip
from PIL import Image
from test_results_cli import FULL, X0, Y0, add_job, run_cli
from test_results_cli import env as env  # noqa: F401 - the fixture

from looking_glass.grid import quadkey
from looking_glass.local.deployment import write_state
from looking_glass.results import webmap
from looking_glass.results.webmap import MapError, make_map


@pytest.fixture
def mapped(env, tile_server, tmp_path):
    """A job whose imagery is the synthetic tile server, and the embedded state pointing at it."""
    write_state(env["state"], os.environ["AWS_ENDPOINT_URL"], env["res"], tile_server.url_template)
    job = add_job(env, FULL)
    return env, job, tile_server


def open_page(sync_playwright, html_path, screenshot):
    errors: list[str] = []
    requests: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--allow-file-access-from-files"])
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 800})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(html_path.as_uri())
            page.wait_for_function("window.lookingGlass && window.lookingGlass.ready", timeout=20_000)
            page.wait_for_function("document.querySelectorAll('img.leaflet-tile-loaded').length > 0", timeout=20_000)
            page.wait_for_load_state("networkidle")
            info = {
                "features": page.evaluate("window.lookingGlass.features"),
                "paths": page.locator("path.lg-tile").count(),
                "imagery": page.locator("img.leaflet-tile-loaded").count(),
                "legend": page.locator(".lg-legend").inner_text(),
                "scale": page.locator(".leaflet-control-scale-line").count(),
            }
            page.locator("path.lg-tile").first.click(force=True)
            page.wait_for_selector(".leaflet-popup-content", timeout=5_000)
            info["popup"] = page.locator(".leaflet-popup-content").inner_text()
            page.screenshot(path=str(screenshot))
            info["requests"] = requests
        finally:
            browser.close()
    return info, errors


def test_map_page_loads_in_chromium_with_every_tile_and_no_console_errors(mapped, capsys, tmp_path):
    sync_playwright = browser_or_skip()
    env, job, tiles = mapped
    out = tmp_path / "map"
    code, stdout, err = run_cli(capsys, "map", job, "--out", str(out))
    assert code == 0, err
    assert "6 zoom-18 features" in stdout
    page = (out / "map.html").read_text()
    # self-contained: no script or stylesheet from anywhere; the only URL is the imagery
    assert not re.search(r"<script[^>]+src=|<link[^>]+href=", page)
    info, errors = open_page(sync_playwright, out / "map.html", tmp_path / "shot.png")
    assert errors == []
    # nothing is fetched at view time but the page itself and the imagery tiles
    imagery_host = tiles.url_template.split("/{z}")[0]
    assert info["requests"] and all(
        u.startswith(("file:", "data:", imagery_host + "/")) for u in info["requests"]
    ), info["requests"]
    assert info["features"] == info["paths"] == len(FULL)
    assert info["imagery"] > 0 and info["scale"] == 1
    assert "building density" in info["legend"] and "no done tile" in info["legend"]
    assert "quadkey" in info["popup"] and "tiles_done" in info["popup"]
    shot = Image.open(tmp_path / "shot.png")
    assert shot.size == (1000, 800)


def test_rolled_up_map_has_one_feature_per_cell(mapped, capsys, tmp_path):
    sync_playwright = browser_or_skip()
    env, job, _ = mapped
    out = tmp_path / "map17"
    code, stdout, _ = run_cli(capsys, "map", job, "--out", str(out), "--zoom", "17", "--colour", "area")
    cells = {quadkey(X0 + dx, Y0 + dy, 18)[:17] for dx, dy in FULL}
    assert code == 0 and f"{len(cells)} zoom-17 features" in stdout
    info, errors = open_page(sync_playwright, out / "map.html", tmp_path / "shot17.png")
    assert errors == [] and info["features"] == info["paths"] == len(cells)
    assert "building area" in info["legend"]


def test_png_figure_is_written(mapped, tmp_path):
    env, job, tiles = mapped
    out = make_map(env["store"], job, tmp_path / "m", tiles.url_template)
    img = Image.open(out["png"])
    assert img.format == "PNG" and img.size[0] > 500
    # not one flat colour: imagery, tiles, legend and scale bar are drawn
    assert len(set(img.convert("RGB").resize((64, 64)).tobytes()[i : i + 3] for i in range(0, 64 * 64 * 3, 3))) > 50


def test_large_jobs_are_rolled_up_to_stay_under_the_feature_cap(mapped, tmp_path):
    env, job, tiles = mapped
    out = make_map(env["store"], job, tmp_path / "m", tiles.url_template, max_features=2)
    assert out["zoom"] < 18 and out["features"] <= 2


def test_map_errors(mapped, capsys, tmp_path, monkeypatch):
    env, job, _ = mapped
    empty = add_job(env, {}, name="empty")
    code, _, err = run_cli(capsys, "map", empty, "--out", str(tmp_path / "e"))
    assert code != 0 and "no tile results yet" in err
    code, _, err = run_cli(capsys, "map", job, "--out", str(tmp_path / "e"), "--colour", "height")
    assert code == 2 and "invalid choice" in err
    monkeypatch.setattr(webmap, "LEAFLET_DIR", tmp_path / "no-leaflet")
    with pytest.raises(MapError, match="npm ci"):
        make_map(env["store"], job, tmp_path / "e", None)
