"""The README's opening works as written: every file it names exists, every `looking-glass`
command in it parses with the real command line, and the example AOI lies on the sample image."""

from __future__ import annotations

import re
import shlex

import pytest
from conftest import REPO_ROOT, SPACENET_SAMPLE

from looking_glass.cli.main import build_parser

README = (REPO_ROOT / "README.md").read_text()
SHELL_BLOCKS = re.findall(r"```sh\n(.*?)```", README, re.S)
FILE = re.compile(r"(?<![\w/.-])((?:examples|tests/data|looking_glass|docs)/[\w./-]+\.(?:geojson|tif|json|png|py|md))")


def _commands():
    for block in SHELL_BLOCKS:
        for line in block.splitlines():
            line = line.split(" #", 1)[0].strip()
            if line.startswith(".venv/bin/looking-glass "):
                yield line


def test_the_readme_opens_with_commands_for_your_imagery():
    assert "## Run it on your imagery" in README.split("## How good is it")[0]
    commands = list(_commands())
    assert {c.split()[1] for c in commands} >= {"demo", "up", "submit", "results", "map"}


@pytest.mark.parametrize("path", sorted(set(FILE.findall(README))))
def test_every_file_the_readme_names_exists(path):
    assert (REPO_ROOT / path).is_file(), path


@pytest.mark.parametrize("command", list(_commands()))
def test_every_readme_command_parses(command, tmp_path, monkeypatch):
    # Paths to write are checked while parsing (their folder must exist): run where the README's
    # earlier commands have run, so `demo`'s output folder is there.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "demo-output").mkdir()
    args = build_parser().parse_args(shlex.split(command)[1:])  # exits 2 on an unknown option
    assert callable(args.func)


def test_the_example_aoi_lies_on_the_sample_image():
    from looking_glass.imagery.mosaic import open_geotiff_source
    from looking_glass.tiling.aoi import parse_aoi
    from looking_glass.tiling.cover import iter_tiles, tile_runs

    aoi = parse_aoi((REPO_ROOT / "examples" / "atlanta_aoi.geojson").read_bytes())
    assert aoi.name == "atlanta-sample"
    tiles = list(iter_tiles(tile_runs(aoi.geometry, 18), 18))
    assert len(tiles) == 12  # as the README says
    with open_geotiff_source(str(SPACENET_SAMPLE / "image.tif")) as image:
        assert all(image.png(x, y, 18) is not None for x, y, *_ in tiles)
