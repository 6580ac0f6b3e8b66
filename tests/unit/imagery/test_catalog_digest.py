"""The worker's catalogue checks a unit's imagery digest against its own definition of the name:
the same definition opens the source; another one (the source redefined while the unit was
queued) reads nothing and fails each tile with the reason; the digests the worker computes are
the enumerator's for the same deployment settings (no false alarm)."""

from __future__ import annotations

import json

import pytest

from looking_glass.imagery.catalog import ImageryCatalog, RedefinedSource, UnknownImagery
from looking_glass.imagery.status import TILE_FAILED
from looking_glass.runtime.imagery_sources import parse_sources
from looking_glass.runtime.settings import EnumeratorSettings, WorkerSettings

TEMPLATE = "https://tiles.example/{z}/{x}/{y}.png"
SOURCES = {"city": {"source": "https://city.example/{z}/{x}/{y}.jpg", "date": "2024-03-01", "attribution": "(c) City"},
           "scene": {"source": "/data/a.tif,/data/b.tif", "bands": "3,2,1"}}


def catalog(sources=SOURCES) -> ImageryCatalog:
    return ImageryCatalog(WorkerSettings.from_env({"LG_TILE_URL_TEMPLATE": TEMPLATE, "LG_IMAGERY_SOURCES": json.dumps(sources)}))


def test_the_workers_digests_are_the_enumerators():
    """The enumerator gets the default's definition as the stacks and the embedded run give it
    (LG_DEFAULT_IMAGERY_SOURCE, with an attribution, which is no part of the digest)."""
    enumerator = EnumeratorSettings.from_env({
        "LG_WORKER_LAUNCHER": "local", "LG_IMAGERY_SOURCES": json.dumps(SOURCES),
        "LG_DEFAULT_IMAGERY_SOURCE": json.dumps({"source": TEMPLATE, "attribution": "(c) Somebody"})})
    cat = catalog()
    for name in ("city", "scene", "default", None):
        assert cat.definition(name).digest == enumerator.imagery.digest(name) != ""


def test_the_same_definition_opens_the_source():
    cat = catalog()
    digest = cat.definition("city").digest
    source = cat.get("city", digest)
    assert not isinstance(source, RedefinedSource) and source is cat.get("city")  # opened once
    assert cat.get(None, cat.definition(None).digest) is cat.get(None)


def test_a_redefined_source_fails_every_tile_with_the_reason_and_reads_nothing():
    old = parse_sources(SOURCES)["city"].digest
    cat = catalog({**SOURCES, "city": "https://elsewhere.example/{z}/{x}/{y}.jpg"})
    new = cat.definition("city").digest
    assert new != old
    source = cat.get("city", old)
    assert isinstance(source, RedefinedSource) and "city" not in cat._open  # nothing opened
    tile = source.fetch(10, 20, 18)
    assert (tile.x, tile.y, tile.z, tile.status, tile.image) == (10, 20, 18, TILE_FAILED, None)
    assert tile.reason == (f"imagery source 'city' was redefined after this job was submitted (digest {old} != {new}): "
                           "submit the AOI again for a job on the new definition")
    # the default too (a redeploy with another tile_url_template)
    assert isinstance(cat.get(None, "0123456789abcdef"), RedefinedSource)


def test_a_name_no_longer_registered_is_unknown_even_with_a_digest():
    with pytest.raises(UnknownImagery, match="unknown imagery source 'gone'"):
        catalog().get("gone", "0123456789abcdef")
