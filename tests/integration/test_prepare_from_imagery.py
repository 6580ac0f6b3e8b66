"""``prepare --imagery SOURCE --aoi AOI --footprints F``: chips from the zoom-18 tiles a tile
server sends (the SpaceNet sample served by ``serve-tiles`` over real HTTP, fetched by the
worker's TileFetcher), against ``prepare --mode tiles`` of the GeoTIFF itself."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys

import numpy as np
import pytest
from conftest import SPACENET_SAMPLE

from looking_glass.cli.main import main as cli_main
from looking_glass.datasets.chips import load_split
from looking_glass.datasets.prepare import PrepareConfig, prepare

IMAGE = SPACENET_SAMPLE / "image.tif"
BUILDINGS = SPACENET_SAMPLE / "buildings.geojson"


@pytest.fixture(scope="module")
def template():
    proc = subprocess.Popen([sys.executable, "-m", "looking_glass.cli.main", "serve-tiles", str(IMAGE), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:\d+/\{z\}/\{x\}/\{y\}\.png", line)
        assert match, (line, proc.stderr.read() if proc.poll() is not None else "")
        yield match.group(0)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=20)


@pytest.fixture(scope="module")
def aoi(tmp_path_factory):
    """The image's footprint (lon/lat), a little smaller, as an AOI file."""
    from looking_glass.imagery.geotiff import GeoTiffTiles, lonlat_footprint

    with GeoTiffTiles(str(IMAGE)) as src:
        shape = lonlat_footprint(src.outline).buffer(-0.0002)
    path = tmp_path_factory.mktemp("aoi") / "aoi.geojson"
    path.write_text(json.dumps({"type": "Feature", "properties": {"name": "sample"}, "geometry": shape.__geo_interface__}))
    return path


def chips(out) -> dict:
    found = {}
    for split in ("train", "validation"):
        a = load_split(out, split)
        for cid, image, mask, sdt in zip(a["chip_ids"], a["image"], a["mask"], a["sdt"]):
            _, _, x, y = str(cid).rsplit("_", 3)
            found[(int(x), int(y))] = (image, mask, sdt)
    return found


def test_chips_from_a_tile_server_match_the_geotiff_in_tiles_mode(template, aoi, tmp_path, capsys):
    out = tmp_path / "xyz"
    rc = cli_main(["prepare", "--imagery", template, "--aoi", str(aoi), "--footprints", str(BUILDINGS),
                   "--out", str(out), "--max-nodata", "1"])
    assert rc == 0, capsys.readouterr()
    printed = capsys.readouterr()
    assert "chips " in printed.err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["mode"] == "tiles" and manifest["sources"]["imagery"]["source"] == template
    assert {c["source"] for c in manifest["chips"]} == {template}
    assert all(c["id"].startswith("127.0.0.1-") for c in manifest["chips"])
    reference = tmp_path / "tif"
    prepare([str(IMAGE)], [str(BUILDINGS)], reference, PrepareConfig(mode="tiles", max_nodata_fraction=1.0))
    ours, theirs = chips(out), chips(reference)
    assert set(ours) <= set(theirs) and len(ours) >= 12
    full = {tuple(c["tile"][1:]) for c in json.loads((reference / "manifest.json").read_text())["chips"] if c["nodata_fraction"] == 0}
    inside = [k for k in ours if k in full]
    assert len(inside) >= 5
    for key in inside:  # tiles wholly inside the image: the same labels, the same pixels within 2 levels
        (image, mask, _), (t_image, t_mask, _) = ours[key], theirs[key]
        # A pixel the stretch makes black is nodata in a served tile (no mask travels with it).
        valid = image.any(-1)
        assert valid.mean() > 0.95
        np.testing.assert_array_equal(mask[valid], t_mask[valid])
        assert np.abs(image.astype(int) - t_image.astype(int))[valid].max() <= 2
    assert sum(int(m.sum()) for _, m, _ in ours.values()) > 10_000  # the buildings are there
    dropped = manifest["counts"]
    assert dropped["total"] == manifest["sources"]["imagery"]["tiles"]
    # The sample's tiles fall in too few 4 x 4 blocks for both splits: per tile (as prepare --images).
    assert dropped["train"] and dropped["validation"] and manifest["parameters"]["split_block"] == 1
    assert sum("split per chip" in w for w in manifest["warnings"]) == 1
    # The manifest and the summary line describe the per-chip rule applied, not the blocks asked for.
    assert manifest["split_rule"].startswith("Split per chip (blocks of 4 x 4 chips, --split-block 4, were asked for")
    assert "never straddle" not in manifest["split_rule"]
    assert "split per chip (too few chips for blocks of 4 x 4)" in printed.out.splitlines()[-1]


@pytest.mark.parametrize("extra, message", [
    (["--aoi", "AOI"], "give either --images"),  # both --images and --imagery
    ([], "--imagery needs --aoi"),
    (["--aoi", "AOI", "--mode", "native"], "chips from --imagery are the zoom-18 tiles"),
    (["--aoi", "AOI", "--stride", "128"], "stride applies to native mode only"),
])
def test_bad_imagery_options_are_one_error(template, aoi, tmp_path, capsys, extra, message):
    args = ["prepare", "--imagery", template, "--footprints", str(BUILDINGS), "--out", str(tmp_path / "o")]
    args += [str(aoi) if a == "AOI" else a for a in extra]
    if message == "give either --images":
        args += ["--images", str(IMAGE)]
    with pytest.raises(SystemExit) as ended:
        cli_main(args)
    assert message in str(ended.value)
    assert not (tmp_path / "o").exists()


def test_an_unreachable_tile_server_and_a_bad_aoi_are_one_error(aoi, tmp_path, capsys):
    base = ["prepare", "--footprints", str(BUILDINGS), "--out", str(tmp_path / "o")]
    with pytest.raises(SystemExit) as ended:
        cli_main([*base, "--imagery", "http://127.0.0.1:9/{z}/{x}/{y}.png", "--aoi", str(aoi)])
    assert "cannot reach the tile server" in str(ended.value) and ended.value.code == 2
    bad = tmp_path / "bad.geojson"
    bad.write_text('{"type": "Polygon", "coordinates": []}')
    with pytest.raises(SystemExit) as ended:
        cli_main([*base, "--imagery", "http://127.0.0.1:9/{z}/{x}/{y}.png", "--aoi", str(bad)])
    assert "bad.geojson" in str(ended.value) or "AOI" in str(ended.value)
    assert not (tmp_path / "o").exists()
