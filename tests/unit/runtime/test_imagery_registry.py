"""The definition digest of an imagery source (part of a job's identity) and the registry the
enumerator and the CLI read (names, definitions, the default; JSON of the stack output and the
embedded state file): what changes a digest and what does not, and every bad input one line."""

from __future__ import annotations

import json

import pytest

from looking_glass.runtime.imagery_sources import (
    ImageryRegistry,
    ImagerySource,
    ImagerySourcesError,
    parse_source_entry,
    single_source,
    unknown_imagery_reason,
)
from looking_glass.runtime.settings import EnumeratorSettings, SettingsError

TEMPLATE = "https://tiles.example.com/{z}/{x}/{y}.png"


def digest(value, name="city") -> str:
    return parse_source_entry(name, value).digest


def test_the_digest_is_the_definition_not_the_name():
    assert digest("a.tif,b.tif", "city") == digest("a.tif,b.tif", "town")
    assert digest("a.tif,b.tif") == digest(" a.tif , b.tif")  # spacing is no part of it
    assert digest("a.tif@2024-05-01") == digest({"source": "a.tif", "date": "2024-05-01T00:00:00Z"})
    distinct = {digest(v) for v in (
        "a.tif,b.tif", "b.tif,a.tif",  # order decides which image wins where undated ones overlap
        "a.tif", "a.tif@2024-05-01", {"source": "a.tif", "bands": "3,2,1"}, {"source": "a.tif", "bands": "1"},
        TEMPLATE, TEMPLATE.replace("tiles.", "other."), "scenes.vrt",
    )}
    assert len(distinct) == 9
    assert len(digest("a.tif")) == 16 and int(digest("a.tif"), 16) >= 0


def test_the_single_source_is_an_entry_like_the_named_ones():
    assert single_source("default", TEMPLATE) == ImagerySource("default", TEMPLATE)
    assert single_source("d", geotiff="s3://b/k.tif", bands=[3, 2, 1]).digest == digest({"source": "s3://b/k.tif", "bands": "3,2,1"}, "x")


def test_the_registry_resolves_names_digests_and_unknown_ones():
    reg = ImageryRegistry({"city": ImagerySource("city", "a.tif"), "base": single_source("base", TEMPLATE)}, "base")
    assert reg.names == {"city", "base"} and reg.resolve(None) == "base"
    assert reg.digest(None) == reg.digest("base") == digest(TEMPLATE) and reg.digest("city") == digest("a.tif")
    assert reg.digest("nowhere") == "" and ImageryRegistry({}, "default").digest(None) == ""  # definition not known
    assert reg.unknown("city") is None
    assert reg.unknown("ctiy") == ("unknown imagery source 'ctiy': not registered with this deployment "
                                   "(registered: base, city); did you mean 'city'?")
    assert unknown_imagery_reason("zzz", ["b", "a"]) == "unknown imagery source 'zzz': not registered with this deployment (registered: a, b)"
    again = ImageryRegistry.from_json(reg.to_json(), "test")
    assert again == reg and json.loads(reg.to_json())["default"] == "base"


@pytest.mark.parametrize("raw, message", [
    ("{", "out: not JSON"),
    ("[]", "out: must be an object with 'default' and 'sources'"),
    ('{"default": "d"}', "out: must be an object with 'default' and 'sources'"),
    ('{"default": "no way", "sources": {}}', "out: default 'no way': use 1-64 letters"),
    ('{"default": "d", "sources": []}', "out: must map source names to sources"),
    ('{"default": "d", "sources": {"x": "ftp://a/{z}"}}', "out: imagery source 'x'"),
])
def test_a_bad_registry_document_is_one_line_naming_it(raw, message):
    with pytest.raises(ImagerySourcesError, match=message.replace("(", r"\(").replace("[", r"\[")):
        ImageryRegistry.from_json(raw, "out")


def test_the_enumerator_reads_the_default_sources_definition():
    env = {"LG_WORKER_LAUNCHER": "local", "LG_IMAGERY_SOURCES": json.dumps({"a": "a.tif"})}
    assert EnumeratorSettings.from_env(env).imagery.digest(None) == ""  # not given: names only
    s = EnumeratorSettings.from_env({**env, "LG_DEFAULT_IMAGERY_SOURCE": json.dumps({"source": TEMPLATE})})
    assert s.imagery_names == {"a", "default"} and s.imagery.digest(None) == digest(TEMPLATE)
    plain = EnumeratorSettings.from_env({**env, "LG_DEFAULT_IMAGERY_SOURCE": "s3://b/k.tif@2024-01-01"})
    assert plain.imagery.sources["default"] == ImagerySource("default", "s3://b/k.tif", "2024-01-01")


@pytest.mark.parametrize("extra, message", [
    ({"LG_DEFAULT_IMAGERY_SOURCE": "{"}, "LG_DEFAULT_IMAGERY_SOURCE: not JSON"),
    ({"LG_DEFAULT_IMAGERY_SOURCE": "ftp://x/{z}"}, "LG_DEFAULT_IMAGERY_SOURCE: imagery source 'default'"),
    ({"LG_DEFAULT_IMAGERY_SOURCE": TEMPLATE, "LG_DEFAULT_IMAGERY": "a"}, "registers 'a' too"),
])
def test_a_bad_default_definition_stops_the_enumerator(extra, message):
    env = {"LG_WORKER_LAUNCHER": "local", "LG_IMAGERY_SOURCES": json.dumps({"a": "a.tif"}), **extra}
    with pytest.raises(SettingsError, match=message):
        EnumeratorSettings.from_env(env)


def test_an_attribution_is_registered_checked_and_no_part_of_the_identity():
    entry = parse_source_entry("esri", {"source": TEMPLATE, "attribution": " Esri, Maxar, Earthstar Geographics "})
    assert entry.attribution == "Esri, Maxar, Earthstar Geographics" and entry.to_json()["attribution"] == entry.attribution
    assert entry.digest == digest(TEMPLATE)  # a credit changes no pixel
    for bad in ("", "   ", "x" * 201, "line\nbreak", 7):
        with pytest.raises(ImagerySourcesError, match="'esri': attribution must be text of 1-200 printable characters"):
            parse_source_entry("esri", {"source": TEMPLATE, "attribution": bad})


@pytest.mark.parametrize("source, expected", [
    (ImagerySource("esri", TEMPLATE, attribution="(c) Esri"), "(c) Esri"),  # configured
    (ImagerySource("city", "a.tif,b.tif"), "imagery 'city'"),  # registered: its name
    # the default source (up --imagery FILE): "imagery 'default'" says nothing, the file does
    (ImagerySource("default", "/work/data/image.tif"), "image.tif"),
    (ImagerySource("default", "s3://bucket/scenes/kigali.tif"), "kigali.tif"),
    (ImagerySource("default", "http://127.0.0.1:41234/{z}/{x}/{y}.png"), ""),
    (ImagerySource("", "/data/scenes/a.tif, s3://b/k/b.tif"), "a.tif, b.tif"),  # files: their names only
    (ImagerySource("", "https://t.example/{z}/{x}/{y}.png?key=SECRET"), "https://t.example/{z}/{x}/{y}.png"),
    (ImagerySource("", "http://127.0.0.1:41234/{z}/{x}/{y}.png"), ""),  # a local tile server is no credit
])
def test_what_a_map_credits(source, expected):
    assert source.credit() == expected
