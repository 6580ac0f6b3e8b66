"""The per-unit result object: what the worker writes reads back, and every bad object is a clear
per-tile error (missing, truncated, corrupt, another job's, a tile it does not hold)."""

import io
import zipfile

import numpy as np
import pytest
from botocore.exceptions import ClientError

from looking_glass.pipeline.unit_results import (
    FORMAT,
    FORMAT_V1,
    SDT_SCALE,
    TileResultError,
    decode_unit_result,
    encode_unit_result,
    result_key,
)
from looking_glass.results.masks import MaskError, read_tile_mask, read_tile_masks, read_tile_rasters

JOB = "ab" * 12
UNIT = "0123456789abcdef"
TILES = [(10, 20, 18), (11, 20, 18)]
QKS = ["q10", "q11"]


class FakeS3:
    """A dict of objects behind get_object, answering NoSuchKey as S3 does; counts the reads."""

    def __init__(self, objects):
        self.objects = objects
        self.reads = 0

    def get_object(self, Bucket, Key):
        self.reads += 1
        if Key not in self.objects:
            raise ClientError({"Error": {"Code": "NoSuchKey", "Message": "gone"}}, "GetObject")
        return {"Body": io.BytesIO(self.objects[Key])}


def masks():
    m = np.zeros((2, 256, 256), bool)
    m[0, 10:20, 30:40] = True
    m[1, 200:, :5] = True
    return m


def item(i, key, job=JOB):
    x, y, z = TILES[i]
    return {"job_id": job, "quadkey": QKS[i], "x": x, "y": y, "z": z, "status": "done", "mask_key": key}


def test_masks_and_signed_distance_read_back_per_tile_with_one_fetch_per_object():
    sdt = np.linspace(-40, 40, 2 * 256 * 256, dtype=np.float32).reshape(2, 256, 256)
    key = result_key(JOB, UNIT, QKS, whole_unit=True)
    assert key == f"masks/{JOB}/{UNIT}.npz"
    s3 = FakeS3({key: encode_unit_result(JOB, UNIT, TILES, QKS, masks(), sdt)})
    for i in range(2):
        assert np.array_equal(read_tile_mask(s3, "b", item(i, key)), masks()[i])
        rasters = read_tile_rasters(s3, "b", item(i, key))
        assert np.abs(rasters.sdt_m - sdt[i]).max() <= 0.5 / SDT_SCALE + 1e-6  # 0.1 m steps
    s3.reads = 0
    got = list(read_tile_masks(s3, "b", [item(i, key) for i in (0, 1, 0, 1)], threads=3))
    assert [g[0]["quadkey"] for g in got] == ["q10", "q11", "q10", "q11"]
    assert all(np.array_equal(m, masks()[i % 2]) for i, (_, m) in enumerate(got))
    assert s3.reads == 1  # one object, fetched once for its four tiles


def test_one_bad_object_fails_only_its_own_tiles_in_a_batch_read():
    good = encode_unit_result(JOB, UNIT, TILES[:1], QKS[:1], masks()[:1])
    s3 = FakeS3({"good": good})
    assert len(list(read_tile_masks(s3, "b", [item(0, "good")]))) == 1
    with pytest.raises(MaskError, match="tile 18/11/20: s3://b/gone is missing"):
        list(read_tile_masks(s3, "b", [item(0, "good"), item(1, "gone")]))


def test_the_object_is_a_plain_npz_that_numpy_reads_without_pickle():
    data = encode_unit_result(JOB, UNIT, TILES, QKS, masks())
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        assert str(npz["format"]) == FORMAT and str(npz["job_id"]) == JOB
        assert list(npz["quadkeys"]) == QKS and npz["tiles"].tolist() == [list(t) for t in TILES]
        assert FORMAT == "looking-glass-unit-result/2" and "sdt_dm" not in npz.files and "mask" not in npz.files
        bits = npz["mask_bits"]  # packed along rows, as the format's docstring tells a reader
        assert bits.dtype == np.uint8 and bits.shape == (2, 256, 32)
        assert np.array_equal(np.unpackbits(bits, axis=-1).astype(bool), masks())
    assert read_tile_rasters(FakeS3({"k": data}), "b", item(0, "k")).sdt_m is None


def test_packed_masks_are_smaller_and_read_back_exactly():
    rng = np.random.default_rng(14)
    m = np.zeros((64, 256, 256), bool)
    for i in range(64):  # blocky "buildings", a few percent of each tile, edges included
        for r, c in rng.integers(-10, 250, (12, 2)):
            m[i, max(r, 0):r + int(rng.integers(4, 30)), max(c, 0):c + int(rng.integers(4, 30))] = True
    tiles, qks = [(i, 7, 18) for i in range(64)], [f"q{i}" for i in range(64)]
    data = encode_unit_result(JOB, UNIT, tiles, qks, m)
    bool_npz = io.BytesIO()
    np.savez_compressed(bool_npz, mask=m)
    assert len(data) < 0.8 * len(bool_npz.getvalue())
    assert np.array_equal(decode_unit_result(data).mask, m) and decode_unit_result(data).mask.dtype == bool


def test_objects_of_format_1_with_bool_masks_are_still_read():
    sdt = np.linspace(-40, 40, 2 * 256 * 256, dtype=np.float32).reshape(2, 256, 256)
    buf = io.BytesIO()  # what the worker wrote before format 2
    np.savez_compressed(buf, format=np.array(FORMAT_V1), job_id=np.array(JOB), unit_id=np.array(UNIT),
                        quadkeys=np.array(QKS), tiles=np.array(TILES, np.int32), mask=masks(),
                        sdt_dm=np.rint(sdt * SDT_SCALE).astype(np.int16))
    s3 = FakeS3({"k": buf.getvalue()})
    for i in range(2):
        rasters = read_tile_rasters(s3, "b", item(i, "k"))
        assert np.array_equal(rasters.mask, masks()[i]) and np.allclose(rasters.sdt_m, sdt[i], atol=0.05)


def test_a_partial_delivery_gets_its_own_deterministic_key():
    a = result_key(JOB, UNIT, ["q2", "q1"], whole_unit=False)
    assert a == result_key(JOB, UNIT, ["q1", "q2"], whole_unit=False) != result_key(JOB, UNIT, ["q1"], whole_unit=False)
    assert a.startswith(f"masks/{JOB}/{UNIT}.") and a.endswith(".npz")


@pytest.mark.parametrize(
    "objects, tile_item, message",
    [
        ({}, item(0, "k"), "is missing"),
        ({"k": b"PK\x03\x04 not really"}, item(0, "k"), "truncated or corrupt"),
        ({"k": b"\x00" * 10}, item(0, "k"), "truncated or corrupt"),
        ("truncated", item(0, "k"), "truncated or corrupt"),
        ({"k": encode_unit_result("cd" * 12, UNIT, TILES, QKS, masks())}, item(0, "k"), f"not job {JOB}"),
        ({"k": encode_unit_result(JOB, UNIT, TILES[:1], QKS[:1], masks()[:1])}, item(1, "k"), "does not hold this tile"),
        ({"k": b""}, {**item(0, "k"), "mask_key": None}, "no stored mask"),
    ],
)
def test_a_bad_object_is_a_clear_error_for_its_tile(objects, tile_item, message):
    if objects == "truncated":
        data = encode_unit_result(JOB, UNIT, TILES, QKS, masks())
        objects = {"k": data[: len(data) // 2]}
    with pytest.raises(MaskError, match=message) as err:
        read_tile_mask(FakeS3(objects), "b", tile_item)
    assert f"tile 18/{tile_item['x']}/{tile_item['y']}" in str(err.value)


def test_another_format_or_missing_arrays_are_refused():
    buf = io.BytesIO()
    np.savez_compressed(buf, format=np.array("something-else/9"), mask=masks())
    with pytest.raises(TileResultError, match="not a result object of format"):
        decode_unit_result(buf.getvalue())
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:  # right format, no arrays
        with z.open("format.npy", "w") as f:
            np.save(f, np.array(FORMAT))
    with pytest.raises(TileResultError, match="lacks job_id, mask_bits, quadkeys, unit_id"):
        decode_unit_result(buf.getvalue())
    for bits in (np.zeros((2, 256, 31), np.uint8), np.zeros((2, 256, 32), np.int16), np.zeros((256, 32), np.uint8)):
        buf = io.BytesIO()
        np.savez_compressed(buf, format=np.array(FORMAT), job_id=np.array(JOB), unit_id=np.array(UNIT),
                            quadkeys=np.array(QKS), mask_bits=bits)
        with pytest.raises(TileResultError, match="not \\(n, S, S / 8\\) uint8"):
            decode_unit_result(buf.getvalue())


def test_shapes_that_do_not_agree_are_refused_when_writing():
    with pytest.raises(ValueError, match="do not agree"):
        encode_unit_result(JOB, UNIT, TILES, QKS[:1], masks())
    with pytest.raises(ValueError, match="does not match"):
        encode_unit_result(JOB, UNIT, TILES, QKS, masks(), np.zeros((2, 8, 8)))
    with pytest.raises(ValueError, match="not square tiles"):
        encode_unit_result(JOB, UNIT, TILES, QKS, np.zeros((2, 256, 100), bool))
