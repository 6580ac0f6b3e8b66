"""Tile packs: the results of the tiles that share a parent three zoom levels up, in one item.

A tile's result is not an item of its own: the tiles whose quadkeys share all but their last
``PACK_LEVELS`` (3) digits, up to 64, live in one results-table item, ``sort_key =
pack#<quadkey[:-3]>`` (docs/results.md#tile-packs). In it:

- ``t<last 3 digits>``, one top-level attribute per tile: a small map of the tile's own fields
  under one-letter names (``TILE_FIELDS``: status, area, pixels, count, valid fraction, capture
  date, reason) and ``u``, the id of its delivery. x, y and z are not stored: they follow from
  the quadkey (they are stored only for a result whose quadkey does not give its x, y, z);
- ``u<id>``: a *delivery*, what one write of a unit shares (``DELIVERY_FIELDS``: its ledger
  ``unit``, ``mask_key``, ``processed_at``) and ``p``, the id of its provenance;
- ``p<id>``: the provenance (model, imagery, threshold, zoom, ...), the same for a whole job
  as a rule, so stored once per pack.

Ids are 12 hex digits of a SHA-256 of the map's typed content, so every writer of the same
delivery or provenance writes the same attribute with the same value: a pack is only ever
written with UpdateItem ``SET`` of these attributes (never a whole-item Put), and writers of
different tiles of one pack never overwrite each other. :func:`unpack` gives back exactly the
item a tile had as an item of its own (``TileResult.item``, as older workers wrote it).
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterator
from decimal import Decimal

from looking_glass.grid import tile_from_quadkey
from looking_glass.pipeline.table import marshal
from looking_glass.runtime.resources import PACK_SORT_PREFIX, TABLE_PARTITION_KEY, TABLE_SORT_KEY, TILE_SORT_PREFIX

__all__ = [
    "DELIVERY_FIELDS",
    "PACK_LEVELS",
    "TILE_FIELDS",
    "pack_attributes",
    "pack_of",
    "pack_sort_key",
    "tile_attribute",
    "unpack",
    "unreferenced",
]

PACK_LEVELS = 3  # a pack is the tile's ancestor this many zoom levels up: up to 4**3 = 64 tiles
TILE_PREFIX, DELIVERY_PREFIX, PROVENANCE_PREFIX = "t", "u", "p"
# A tile's own fields and their names in its value.
TILE_FIELDS = {
    "status": "s",
    "building_area_m2": "a",
    "building_pixels": "n",
    "building_count": "c",
    "valid_fraction": "f",
    "capture_date": "d",
    "reason": "r",
    "x": "x",
    "y": "y",
    "z": "z",
}
_FIELD_OF = {short: name for name, short in TILE_FIELDS.items()}
DELIVERY_FIELDS = ("unit", "mask_key", "processed_at")  # differ from one write of a unit to the next
_DERIVED = (TABLE_PARTITION_KEY, TABLE_SORT_KEY, "quadkey")
_ID_DIGITS = 12


def pack_of(quadkey: str) -> str:
    """The pack (a quadkey three levels up; ``""`` for tiles of zoom 3 or less) holding a tile."""
    return quadkey[: max(0, len(quadkey) - PACK_LEVELS)]


def pack_sort_key(pack: str) -> str:
    """The results table's sort key of a pack."""
    return PACK_SORT_PREFIX + pack


def tile_attribute(quadkey: str) -> str:
    """The pack attribute holding a tile: ``t`` and the quadkey's digits below its pack."""
    return TILE_PREFIX + quadkey[len(pack_of(quadkey)) :]


@functools.lru_cache(maxsize=4096)
def _xyz(quadkey: str) -> tuple[int, int, int] | None:
    """The tile a quadkey names (``grid.tile_from_quadkey``), None when it is not a quadkey
    (digits 0-3). Cached: a pack's tiles are read and written many times over."""
    if quadkey.strip("0123"):
        return None
    return tile_from_quadkey(quadkey)


def _digest(value: dict) -> str:
    """12 hex digits of a SHA-256 of a map's typed DynamoDB content (key order does not matter)."""
    items = tuple(sorted(value.items()))
    try:
        return _digest_of(items)
    except TypeError:  # a list or map among the values: not hashable, so not cached
        return _digest_of.__wrapped__(items)


@functools.lru_cache(maxsize=256)
def _digest_of(items: tuple) -> str:
    """:func:`_digest` of a map's sorted (name, value) pairs: computed once per distinct map (a
    unit's 64 tiles share their delivery and provenance)."""
    return hashlib.sha256(json.dumps(marshal(dict(items)), sort_keys=True).encode()).hexdigest()[:_ID_DIGITS]


def pack_attributes(item: dict) -> dict[str, dict]:
    """A tile's item (``TileResult.item``: plain values, None for absent) as the attributes of its
    pack that it sets: ``{"t...": tile value, "u<id>": delivery, "p<id>": provenance}``."""
    item = {k: v for k, v in item.items() if v is not None}
    qk = item["quadkey"]
    given = tuple(int(item[k]) for k in ("x", "y", "z") if k in item)
    skip = {"x", "y", "z"} if given == _xyz(qk) else set()
    provenance = {k: v for k, v in item.items() if k not in TILE_FIELDS and k not in DELIVERY_FIELDS and k not in _DERIVED}
    pid = _digest(provenance)
    delivery = {**{k: item[k] for k in DELIVERY_FIELDS if k in item}, "p": pid}
    did = _digest(delivery)
    value = {short: item[name] for name, short in TILE_FIELDS.items() if name in item and name not in skip}
    value["u"] = did
    return {tile_attribute(qk): value, DELIVERY_PREFIX + did: delivery, PROVENANCE_PREFIX + pid: provenance}


def unpack(pack: dict) -> Iterator[dict]:
    """The tile items of a pack item (plain values, as ``unmarshal`` gives them), in quadkey
    order: each exactly the item the tile had as an item of its own."""
    prefix = pack[TABLE_SORT_KEY][len(PACK_SORT_PREFIX) :]
    for name in sorted(a for a in pack if a.startswith(TILE_PREFIX)):
        value = pack[name]
        qk = prefix + name[len(TILE_PREFIX) :]
        delivery = pack.get(DELIVERY_PREFIX + str(value.get("u")), {})
        item = {TABLE_PARTITION_KEY: pack[TABLE_PARTITION_KEY], TABLE_SORT_KEY: TILE_SORT_PREFIX + qk, "quadkey": qk}
        xyz = _xyz(qk)
        if xyz is not None:
            item.update(zip(("x", "y", "z"), map(Decimal, xyz)))
        item.update(pack.get(PROVENANCE_PREFIX + str(delivery.get("p")), {}))
        item.update((k, v) for k, v in delivery.items() if k != "p")
        item.update((_FIELD_OF[k], v) for k, v in value.items() if k in _FIELD_OF)
        yield item


def _is_id_attribute(name: str, prefix: str) -> bool:
    """Whether ``name`` is a delivery's or provenance's attribute (``prefix`` and 12 hex digits)."""
    digits = name[len(prefix) :]
    return name.startswith(prefix) and len(digits) == _ID_DIGITS and not digits.strip("0123456789abcdef")


def unreferenced(pack: dict, removed: set[str] = frozenset()) -> list[str]:
    """The delivery and provenance attributes of ``pack`` (a pack item, plain values) that none of
    its tiles refers to once the tile attributes ``removed`` are gone, sorted. Every write of a
    unit adds its delivery (its ``processed_at`` differs from one write to the next), so a tile
    written again (a redelivery after a crash, two workers on one message) or removed by retry
    leaves its old delivery behind: ``retry`` removes these with the tiles (``ledger``), so a pack
    that is retried again and again does not grow, and its writes (billed by its size) cost no more."""
    tiles = [v for name, v in pack.items() if name.startswith(TILE_PREFIX) and name not in removed]
    deliveries = {DELIVERY_PREFIX + str(v.get("u")) for v in tiles}
    provenances = {PROVENANCE_PREFIX + str(pack[d].get("p")) for d in deliveries if d in pack}
    return sorted(name for name in pack
                  if (_is_id_attribute(name, DELIVERY_PREFIX) and name not in deliveries)
                  or (_is_id_attribute(name, PROVENANCE_PREFIX) and name not in provenances))
