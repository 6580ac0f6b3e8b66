"""`up --imagery [NAME=]SOURCE[@DATE]` (repeated) and `demo --imagery a.tif,b.tif`: named sources
checked by opening them, a mosaic's footprint as the demo's AOI; every bad value one line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest

from looking_glass.local.inputs import InputError, add_run_options, validated_inputs

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "imagery"))
from test_mosaic import TILE_SIZE, X, Y, write_tif  # noqa: E402


@pytest.fixture
def template(tile_server):
    """A URL template whose server answers (`up` asks each template for one tile)."""
    return tile_server.url_template


def up_args(*argv):
    parser = argparse.ArgumentParser()
    add_run_options(parser, named=True)
    return parser.parse_args(list(argv))


def demo_args(*argv):
    parser = argparse.ArgumentParser()
    parser.add_argument("--aoi")
    add_run_options(parser, truth=True)
    return parser.parse_args(list(argv))


@pytest.fixture
def images(tmp_path):
    a = write_tif(tmp_path / "a.tif", 100, 0, TILE_SIZE, date="2020:01:02 10:00:00")
    b = write_tif(tmp_path / "b.tif", 200, TILE_SIZE, TILE_SIZE)
    return a, b


def test_named_sources_beside_the_default(images, monkeypatch, template):
    a, b = images
    monkeypatch.chdir(a.parent)
    inputs = validated_inputs(up_args("--imagery", "city=a.tif,b.tif@2024-05-06", "--imagery", f"osm={template}",
                                      "--imagery", str(a)))
    assert inputs.imagery.kind == "geotiff" and inputs.imagery.source == str(a.resolve())
    city = inputs.sources["city"]
    assert city.source == f"{a.resolve()},{b.resolve()}" and city.date == "2024-05-06"
    assert inputs.sources["osm"].is_template and inputs.sources["osm"].source == template


@pytest.mark.parametrize("values, message", [
    (["x=a.tif", "x=b.tif"], "the name 'x' is given twice"),
    (["default=a.tif"], "the name 'default' is the default source's"),
    (["a.tif", "b.tif"], "--imagery without NAME= given 2 times"),
    (["x=missing.tif"], "--imagery x: missing.tif: no such file"),
    (["x=a.tif,c.png"], "'c.png' does not end in .tif or .tiff"),
    (["x=a.tif@2020-99-01"], "capture date '2020-99-01' does not parse"),
    (["x=https://t.example/{z}/{x}/{y}.png@2024/01/01"], "--imagery imagery source 'x': capture date '2024/01/01' does not parse"),
    (["x=a.tif@2024-1-5"], "capture date '2024-1-5' does not parse"),
    # the default source has no capture date: a bad one is still a date, a good one belongs to a name
    (["a.tif@2024/01/01"], "--imagery a.tif: capture date '2024/01/01' does not parse"),
    (["a.tif@2024-01-05"], "--imagery a.tif@2024-01-05: a capture date goes with a named source (up --imagery NAME=a.tif@2024-01-05"),
    (["x=https://t.example/{z}/{x}.png"], "lacks {y}"),
    (["my city=a.tif"], "imagery source name 'my city': use 1-64 letters"),  # a bad name, not a missing file
    (["city!=a.tif"], "imagery source name 'city!'"),
])
def test_bad_named_sources_are_one_line(images, monkeypatch, values, message):
    monkeypatch.chdir(images[0].parent)
    argv = [arg for v in values for arg in ("--imagery", v)]
    with pytest.raises(InputError) as err:
        validated_inputs(up_args(*argv))
    assert message in str(err.value)


def closed_port() -> int:
    """A local port nobody listens on (bound, then let go)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("named", [True, False])
def test_up_refuses_a_template_whose_server_does_not_answer(named):
    """Else `up` starts, and every unit of a job on it is retried into the dead-letter queue
    while the job stays RUNNING (issue 18): one line naming the source and the URL asked."""
    template = f"http://127.0.0.1:{closed_port()}/{{z}}/{{x}}/{{y}}.png?key=SECRET"
    with pytest.raises(InputError) as err:
        validated_inputs(up_args("--imagery", f"down={template}" if named else template))
    message = str(err.value)
    assert message.startswith("--imagery down: " if named else f"--imagery {template[:-len('?key=SECRET')]}: ")
    assert f"GET {template[:template.index('{')]}0/0/0.png failed (ConnectionError)" in message
    assert "SECRET" not in message and "\n" not in message


def test_the_demo_runs_on_a_mosaic_and_its_footprint(images):
    a, b = images
    inputs = validated_inputs(demo_args("--imagery", f"{a},{b}"))
    assert inputs.imagery.kind == "geotiff" and inputs.imagery.source == f"{a},{b}"
    from looking_glass.tiling.aoi import parse_aoi
    from looking_glass.tiling.cover import iter_tiles, tile_runs

    aoi = parse_aoi(inputs.aoi_bytes)
    assert aoi.name == "b-footprint"  # named after the spec's last file; no space: a job name easy to give on the command line
    assert list(iter_tiles(tile_runs(aoi.geometry))) == [(X, Y, 18), (X + 1, Y, 18)]  # both images' tiles, no more


def test_a_path_with_an_equals_sign_is_still_a_source(images, tmp_path):
    odd = write_tif(tmp_path / "k=v.tif", 100, 0, TILE_SIZE)
    inputs = validated_inputs(up_args("--imagery", str(odd)))
    assert inputs.imagery.source == str(odd.resolve()) and inputs.sources == {}


def test_attributions_credit_named_sources_and_the_default(images, monkeypatch, template):
    """`up --attribution NAME=TEXT`: the named source's entry carries it (the map of its jobs shows
    it: the job record keeps the entry); `default=` the default source's; neither changes a
    source's digest (a credit is no part of a job's identity)."""
    monkeypatch.chdir(images[0].parent)
    plain = validated_inputs(up_args("--imagery", "city=a.tif", "--imagery", f"osm={template}"))
    inputs = validated_inputs(up_args("--imagery", "city=a.tif", "--imagery", f"osm={template}",
                                      "--attribution", "city=\u00a9 City survey, 2024 = good", "--attribution", "default=Synthetic"))
    assert inputs.sources["city"].attribution == "\u00a9 City survey, 2024 = good"  # split at the first '='
    assert inputs.sources["osm"].attribution is None and inputs.default_attribution == "Synthetic"
    assert inputs.sources["city"].to_json()["attribution"] == "\u00a9 City survey, 2024 = good"
    assert inputs.sources["city"].digest == plain.sources["city"].digest
    assert plain.default_attribution is None and plain.sources["city"].attribution is None
    # without any --imagery, the default (the synthetic world) may still be credited
    assert validated_inputs(up_args("--attribution", "default=Mine")).default_attribution == "Mine"


@pytest.mark.parametrize("values, message", [
    (["citty=X"], "--attribution citty=...: unknown imagery source 'citty': not registered by --imagery NAME=SOURCE "
                  "(registered: city, default); did you mean 'city'?"),
    (["nope"], "--attribution 'nope': give NAME=TEXT (NAME: a source of --imagery NAME=SOURCE, or 'default')"),
    (["=X"], "--attribution '=X': give NAME=TEXT"),
    (["city="], "--attribution imagery source 'city': attribution must be text of 1-200 printable characters"),
    (["city=   "], "attribution must be text of 1-200 printable characters"),
    (["city=two\nlines"], "attribution must be text of 1-200 printable characters"),
    (["city=" + "x" * 201], "attribution must be text of 1-200 printable characters"),
    (["city=A", "city=B"], "--attribution city=...: given twice"),
])
def test_bad_attributions_are_one_line(images, monkeypatch, values, message):
    monkeypatch.chdir(images[0].parent)
    argv = ["--imagery", "city=a.tif", *[arg for v in values for arg in ("--attribution", v)]]
    with pytest.raises(InputError) as err:
        validated_inputs(up_args(*argv))
    assert message in str(err.value) and "\n" not in str(err.value).replace("two\nlines", "")


def test_an_unknown_attribution_name_exits_2_before_anything_starts(images, tmp_path, capsys):
    from looking_glass.cli.main import main

    state = tmp_path / "state" / "embedded.json"
    with pytest.raises(SystemExit) as exit_:
        main(["up", "--imagery", f"city={images[0]}", "--attribution", "town=X", "--embedded", str(state)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--attribution town=...: unknown imagery source 'town'" in err
    assert not state.exists()
