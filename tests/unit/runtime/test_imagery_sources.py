"""The imagery registry (LG_IMAGERY_SOURCES / cdk.json imagery_sources): entries, names, dates,
and how the worker and enumerator settings read it; every bad input one clear line."""

from __future__ import annotations

import json

import pytest

from looking_glass.runtime.imagery_sources import (
    ImagerySource,
    ImagerySourcesError,
    encode_sources,
    parse_source_entry,
    parse_sources,
)
from looking_glass.runtime.settings import EnumeratorSettings, SettingsError, WorkerSettings

TEMPLATE = "https://tiles.example.com/{z}/{x}/{y}.png"


def test_text_and_object_entries():
    sources = parse_sources(json.dumps({
        "city": "s3://b/a.tif,s3://b/b.tif@2023-06-01",
        "osm": {"source": TEMPLATE, "date": "2024-01-02"},
        "nir": {"source": "scenes.vrt", "bands": "4,3,2"},
    }))
    assert sources["city"] == ImagerySource("city", "s3://b/a.tif,s3://b/b.tif", "2023-06-01")
    assert sources["osm"].is_template and sources["osm"].date == "2024-01-02"
    assert sources["nir"].bands == (4, 3, 2) and not sources["nir"].is_template
    assert parse_sources(encode_sources(sources)) == sources  # what the processes receive
    assert parse_sources(None) == {} and parse_sources("  ") == {}


@pytest.mark.parametrize("raw, message", [
    ("{not json", "LG_IMAGERY_SOURCES: not JSON"),
    ("[1, 2]", "must map source names to sources"),
    ('{"bad name": "a.tif"}', "'bad name': use 1-64 letters"),
    ('{"x": 5}', "give text (SOURCE or SOURCE@YYYY-MM-DD) or an object"),
    ('{"x": {"source": "a.tif", "when": "2020"}}', "unknown member(s) when"),
    ('{"x": {"date": "2020-01-01"}}', "'source' must be text"),
    ('{"x": "a.png"}', "'a.png' does not end in .tif or .tiff"),
    ('{"x": "https://t/{z}/{x}.png"}', "lacks {y}"),
    ('{"x": "ftp://h/a.tif"}', "only local paths and s3:// URIs"),
    ('{"x": {"source": "a.tif", "date": "June 2020"}}', "capture date 'June 2020' does not parse"),
    ('{"x": "a.tif@2020-13-45"}', "capture date '2020-13-45' does not parse"),
    # anything after the last @ that looks like a date is one, parsed or refused (issue 18): it
    # never silently becomes part of the URL (every tile a 404) or the file name ("not .tif")
    ('{"x": "https://t/{z}/{x}/{y}.png@2024/01/01"}', "'x': capture date '2024/01/01' does not parse (use YYYY-MM-DD"),
    ('{"x": "https://t/{z}/{x}/{y}.png@2024-1-5"}', "capture date '2024-1-5' does not parse"),
    ('{"x": "a.tif@2024/01/01"}', "capture date '2024/01/01' does not parse"),
    ('{"x": "a.tif,b.tif@2024"}', "capture date '2024' does not parse"),
    ('{"x": {"source": "https://t/{z}/{x}/{y}.png", "bands": "1"}}', "bands apply to GeoTIFF sources only"),
    ('{"x": {"source": "a.tif", "bands": "1,2"}}', "give 1 band (grey) or 3 bands"),
])
def test_bad_registries_are_refused_naming_the_entry(raw, message):
    with pytest.raises(ImagerySourcesError) as err:
        parse_sources(raw)
    assert message in str(err.value)


def test_a_date_suffix_is_only_a_trailing_iso_date():
    # An @ inside a URL (user info) is not a date.
    entry = parse_source_entry("t", "https://user@tiles.example.com/{z}/{x}/{y}.png")
    assert entry.source.startswith("https://user@") and entry.date is None
    for text in ("https://u:p@127.0.0.1:8080/{z}/{x}/{y}.png", "scene@2x.tif"):  # digits, then more than a date's
        assert parse_source_entry("t", text) == parse_source_entry("t", {"source": text})
    assert parse_source_entry("t", "a.tif@2024-05-06T10:00:00Z").date == "2024-05-06T10:00:00Z"


def test_worker_settings_with_registered_sources_only():
    env = {"LG_IMAGERY_SOURCES": json.dumps({"a": "a.tif", "b": TEMPLATE}), "LG_DEFAULT_IMAGERY": "b"}
    s = WorkerSettings.from_env(env)
    assert s.default_imagery == "b" and set(s.imagery_sources) == {"a", "b"} and s.tile_url_template == ""


@pytest.mark.parametrize("env, message", [
    ({"LG_IMAGERY_SOURCES": json.dumps({"a": "a.tif", "b": TEMPLATE})}, "LG_DEFAULT_IMAGERY is required"),
    ({"LG_IMAGERY_SOURCES": json.dumps({"a": "a.tif"}), "LG_DEFAULT_IMAGERY": "c"}, "LG_DEFAULT_IMAGERY='c' is not registered"),
    ({"LG_IMAGERY_SOURCES": json.dumps({"default": "a.tif"}), "LG_TILE_URL_TEMPLATE": TEMPLATE}, "name the default one way only"),
    ({"LG_IMAGERY_SOURCES": json.dumps({"k": "https://t/{z}/{x}/{y}.png?key={token}"}), "LG_DEFAULT_IMAGERY": "k"},
     "has {token} but LG_IMAGERY_SECRET is not set"),
    ({"LG_IMAGERY_SOURCES": json.dumps({"k": "http://t/{z}/{x}/{y}.png?key={token}"}), "LG_DEFAULT_IMAGERY": "k",
      "LG_IMAGERY_SECRET": "s"}, "only sent over HTTPS"),
    ({"LG_IMAGERY_SOURCES": json.dumps({"a": "a.tif"}), "LG_DEFAULT_IMAGERY": "a", "LG_IMAGERY_BANDS": "1"},
     "registered sources carry their own"),
])
def test_bad_worker_registry_settings(env, message):
    with pytest.raises(SettingsError) as err:
        WorkerSettings.from_env(env)
    assert message in str(err.value)


def test_a_single_source_is_the_default_beside_the_registry():
    s = WorkerSettings.from_env({"LG_TILE_URL_TEMPLATE": TEMPLATE, "LG_IMAGERY_SOURCES": json.dumps({"a": "a.tif"})})
    assert s.default_imagery == "default" and list(s.imagery_sources) == ["a"]


def test_the_enumerator_knows_the_names_jobs_may_give():
    env = {"LG_WORKER_LAUNCHER": "local", "LG_IMAGERY_SOURCES": json.dumps({"a": "a.tif"})}
    s = EnumeratorSettings.from_env(env)
    assert s.imagery_names == {"a", "default"} and s.default_imagery == "default"
    with pytest.raises(SettingsError, match="not JSON"):
        EnumeratorSettings.from_env({**env, "LG_IMAGERY_SOURCES": "{"})
