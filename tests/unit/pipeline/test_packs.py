"""Tile packs' attribute layout (looking_glass.pipeline.packs), without a table."""

from decimal import Decimal

from looking_glass import pricing
from looking_glass.grid import quadkey
from looking_glass.pipeline.metering import item_bytes
from looking_glass.pipeline.packs import pack_attributes, pack_of, pack_sort_key, tile_attribute, unpack, unreferenced
from looking_glass.pipeline.table import TileResult, marshal, unmarshal

PROV = {"model_id": "deeplabv3plus-mobilenetv2a035-synthetic", "model_version": "3", "model_runtime": "onnx/CPUExecutionProvider",
        "imagery": "http://127.0.0.1:8000/{z}/{x}/{y}.png", "threshold": Decimal("0.500"), "zoom": 18,
        "processed_at": "2026-11-30T12:00:00+00:00"}


def done(x, y, unit="0123456789abcdef"):
    return TileResult(x, y, 18, quadkey(x, y, 18), "done", Decimal("123.456"), 1234, mask_key=f"masks/{'a' * 24}/{unit}.npz",
                      unit=unit, valid_fraction=Decimal("0.9876"), capture_date="2023-05-05", building_count=3)


def as_pack(job, items):
    """The pack item these tile items make, as the table would give it back."""
    attributes = {}
    for item in items:
        attributes.update(pack_attributes(item))
    qk = items[0]["quadkey"]
    return unmarshal(marshal({"job_id": job, "sort_key": pack_sort_key(pack_of(qk)), **attributes}))


def test_a_pack_is_the_ancestor_three_levels_up_and_a_tile_its_last_digits():
    assert pack_of("0123012301230123") == "0123012301230" and tile_attribute("0123012301230123") == "t123"
    assert pack_of("012") == pack_of("") == "" and tile_attribute("012") == "t012" and tile_attribute("1") == "t1"
    assert {pack_of(quadkey(x, y, 18)) for x in range(8) for y in range(8)} == {quadkey(0, 0, 15)}


def test_unpack_gives_back_exactly_each_tiles_own_item():
    failed = TileResult(9, 1, 18, quadkey(9, 1, 18), "failed", reason="HTTP 500", unit="u2")
    items = [done(x, y).item("j", PROV) for x in range(8, 16) for y in range(8)] + [failed.item("j", {**PROV, "threshold": Decimal("0.4")})]
    items = [i for i in items if i["quadkey"] != failed.quadkey] + [failed.item("j", PROV)]
    got = list(unpack(as_pack("j", items)))
    assert got == sorted((unmarshal(marshal(i)) for i in items), key=lambda i: i["quadkey"])
    assert all(isinstance(i[k], Decimal) for i in got for k in ("x", "y", "z"))


def test_x_y_z_are_stored_only_when_the_quadkey_does_not_give_them():
    real = pack_attributes(done(5, 6).item("j", PROV))[tile_attribute(quadkey(5, 6, 18))]
    assert not {"x", "y", "z"} & set(real)
    fake = TileResult(5, 6, 18, "q0001", "done", Decimal(1), unit="u").item("j", {})
    value = pack_attributes(fake)["t001"]
    assert (value["x"], value["y"], value["z"]) == (5, 6, 18)
    assert list(unpack(as_pack("j", [fake]))) == [unmarshal(marshal(fake))]


def test_provenance_and_deliveries_are_stored_once_per_pack():
    one, other = done(0, 0, unit="u1").item("j", PROV), done(1, 0, unit="u2").item("j", PROV)
    a, b = pack_attributes(one), pack_attributes(other)
    assert [k for k in a if k.startswith("p")] == [k for k in b if k.startswith("p")]  # the same provenance
    assert [k for k in a if k.startswith("u")] != [k for k in b if k.startswith("u")]  # another delivery
    assert pack_attributes(one) == a  # the same content, the same ids: rewriting sets the same values
    listed = pack_attributes({**one, "bands": ["r", "g", "b"]})  # a value that cannot be cached
    assert [k for k in listed if k.startswith("p")] != [k for k in a if k.startswith("p")]
    assert pack_attributes({**one, "bands": ["r", "g", "b"]}) == listed


def test_a_full_pack_of_64_done_tiles_stays_small():
    """What a tile costs in its pack: its value (about 60 bytes with the attribute's name), where
    a per-tile item of its own was about 450 bytes."""
    items = [done(x, y, unit=f"{y:016x}").item("j" * 24, PROV) for x in range(8) for y in range(8)]
    pack = marshal(as_pack("j" * 24, items))
    tile = {k: v for k, v in pack.items() if k.startswith("t")}
    assert len(tile) == 64 and item_bytes(tile) / 64 < 64
    assert item_bytes(marshal(items[0])) > 400
    assert item_bytes(pack) < 6 * 1024  # 8 deliveries (one per row unit) and one provenance


def test_the_cost_estimate_sizes_a_pack_as_it_is_laid_out():
    """pricing's pack sizes (what `looking-glass estimate` prices) are those of this layout for a
    representative done tile: 64 tiles written by 8 row units."""
    items = [done(x, y, unit=f"{y:016x}").item("j" * 24, PROV) for x in range(8) for y in range(8)]
    pack = marshal(as_pack("j" * 24, items))
    sizes = {kind: item_bytes({k: v for k, v in pack.items() if k[0] == kind}) for kind in "tu"}
    assert sizes["t"] == 64 * pricing.ASSUMED_PACK_TILE_BYTES and sizes["u"] == 8 * pricing.ASSUMED_PACK_DELIVERY_BYTES
    assert item_bytes(pack) - sizes["t"] - sizes["u"] == pricing.ASSUMED_PACK_BASE_BYTES


def test_unreferenced_lists_the_deliveries_and_provenances_no_remaining_tile_refers_to():
    job, x0, y0 = "a" * 24, 152_024, 131_472
    a, b = done(x0, y0, "unit-a").item(job, PROV), done(x0 + 1, y0, "unit-b").item(job, {**PROV, "model_version": "4"})
    again = done(x0 + 1, y0, "unit-b").item(job, {**PROV, "model_version": "4", "processed_at": "2026-11-30T13:00:00+00:00"})
    pack = as_pack(job, [a, b, again])  # b written twice: its first delivery is no one's now
    ids = {name: name for name in pack if name[0] in "up" and len(name) == 13}
    first_b, second_b = (next(iter(k for k in pack_attributes(i) if k.startswith("u"))) for i in (b, again))
    prov_b = next(k for k in pack_attributes(b) if k.startswith("p"))
    assert unreferenced(pack) == [first_b]
    removed = unreferenced(pack, {tile_attribute(b["quadkey"])})  # b's tile retried: its deliveries and provenance go
    assert removed == sorted([first_b, second_b, prov_b]) and set(removed) < set(ids)
    assert unreferenced(pack, {tile_attribute(a["quadkey"]), tile_attribute(b["quadkey"])}) == sorted(ids)
    assert unreferenced({"job_id": job, "sort_key": "pack#0", "unit": "x", "p": "y"}) == []  # not ids: kept
