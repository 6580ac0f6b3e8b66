"""The fast decoders (libspng, libjpeg-turbo through imagecodecs) give exactly Pillow's arrays for
the plain tiles they take, leave every other tile to Pillow, and never change a tile's outcome,
broken tiles included (looking_glass.imagery.fast_decode)."""

import io

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

import looking_glass.imagery.fast_decode as fast_decode
import looking_glass.imagery.tiles as tiles
from looking_glass.datasets.synthetic import png_bytes, render_tile
from looking_glass.imagery.fast_decode import fast_rgb
from looking_glass.imagery.tiles import decode_tile
from looking_glass.local.tileserver import JPEG_QUALITY

_rng = np.random.default_rng(14)
NOISE = _rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)
SYNTH = render_tile(18, 77001, 99001)[0]  # what the benchmark's tile server sends


def encode(arr: np.ndarray, fmt: str, mode: str | None = None, **kw) -> bytes:
    buf = io.BytesIO()
    img = Image.fromarray(arr)
    (img.convert(mode) if mode else img).save(buf, format=fmt, **kw)
    return buf.getvalue()


def png_info(*chunks: tuple[bytes, bytes]) -> PngImagePlugin.PngInfo:
    info = PngImagePlugin.PngInfo()
    for kind, body in chunks:
        info.add(kind, body)
    return info


def pillow(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as img:
        return np.array(img.convert("RGB"))


PLAIN = {
    "synthetic server png": png_bytes(SYNTH),
    "synthetic server jpeg": encode(SYNTH, "JPEG", quality=JPEG_QUALITY),
    "png level 1": encode(SYNTH, "PNG", compress_level=1),
    "png optimized": encode(SYNTH, "PNG", optimize=True),
    "png noise": encode(NOISE, "PNG"),
    "png with gAMA, cHRM, sRGB, pHYs": encode(SYNTH, "PNG", pnginfo=png_info(
        (b"gAMA", (45455).to_bytes(4, "big")), (b"cHRM", bytes(range(32))), (b"sRGB", b"\x00"),
        (b"pHYs", bytes(9)))),
    **{f"jpeg q{q} subsampling {s}{' progressive' if p else ''}": encode(SYNTH, "JPEG", quality=q, subsampling=s, progressive=p)
       for q, s, p in [(90, 0, False), (90, 1, False), (90, 2, False), (75, 2, True), (95, 0, True)]},
    "jpeg noise": encode(NOISE, "JPEG", quality=85),
}


@pytest.mark.parametrize("name", sorted(PLAIN))
def test_plain_tiles_are_decoded_fast_to_exactly_pillows_array(name):
    data = PLAIN[name]
    fast = fast_rgb(data)
    assert fast is not None, "a plain tile must take the fast path"
    assert fast.shape == (256, 256, 3) and fast.dtype == np.uint8 and fast.flags.writeable
    np.testing.assert_array_equal(fast, pillow(data))
    np.testing.assert_array_equal(decode_tile(1, 2, 18, data).image, fast)


def test_decode_tile_takes_the_fast_path(monkeypatch):
    seen = []
    monkeypatch.setattr(tiles, "fast_rgb", lambda data: seen.append(data) or fast_rgb(data))
    tile = decode_tile(1, 2, 18, PLAIN["synthetic server png"])
    assert seen == [PLAIN["synthetic server png"]] and tile.image is not None and tile.valid_fraction == 1.0


_exif = Image.Exif()
_exif[0x0112] = 6  # orientation: rotate
_cmyk = io.BytesIO()
Image.fromarray(SYNTH).convert("CMYK").save(_cmyk, "JPEG")
NOT_PLAIN = {
    "rgba png": encode(SYNTH, "PNG", mode="RGBA"),
    "palette png": encode(SYNTH, "PNG", mode="P"),
    "grey png": encode(SYNTH, "PNG", mode="L"),
    "png with a transparent colour": encode(SYNTH, "PNG", transparency=(0, 0, 0)),
    "png with EXIF": encode(SYNTH, "PNG", exif=_exif.tobytes()),
    "png with a text chunk": encode(SYNTH, "PNG", pnginfo=png_info((b"tEXt", b"Comment\x00hello"))),
    "png 128 px": encode(SYNTH[:128, :128], "PNG"),
    "png without IEND": PLAIN["synthetic server png"][:-12],
    "png cut short": PLAIN["synthetic server png"][:5000],
    "jpeg with EXIF": encode(SYNTH, "JPEG", exif=_exif.tobytes()),
    "grey jpeg": encode(SYNTH, "JPEG", mode="L"),
    "cmyk jpeg (Adobe segment)": _cmyk.getvalue(),
    "jpeg 128 px": encode(SYNTH[:128, :128], "JPEG"),
    "jpeg without EOI": PLAIN["synthetic server jpeg"][:-2],
    "jpeg cut short": PLAIN["synthetic server jpeg"][:6000],
    "webp": encode(SYNTH, "WEBP"),
    "html": b"<html>not a tile</html>",
    "empty": b"",
}


@pytest.mark.parametrize("name", sorted(NOT_PLAIN))
def test_other_tiles_are_left_to_pillow(name):
    assert fast_rgb(NOT_PLAIN[name]) is None


def outcome(data: bytes):
    tile = decode_tile(3, 4, 18, data)
    return tile.status, tile.reason, None if tile.image is None else tile.image.tobytes()


@pytest.mark.parametrize("fmt", ["png", "jpeg"])
def test_mangled_tiles_end_as_they_would_with_pillow_alone(fmt, monkeypatch):
    """Bytes overwritten, cut or appended anywhere: the same image, status and reason as Pillow
    alone gives (a libjpeg-turbo that decodes a truncated scan must not turn a failed tile into an
    image)."""
    good = PLAIN[f"synthetic server {fmt}"]
    rng = np.random.default_rng(7)
    cases = [good[:-1], good[:-2], good + b"trailing"]
    for _ in range(80):
        at, n = int(rng.integers(0, len(good))), int(rng.integers(1, 24))
        bad = bytearray(good)
        bad[at : at + n] = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        cases += [bytes(bad), good[:at]]
    with_fast = [outcome(c) for c in cases]
    monkeypatch.setattr(tiles, "fast_rgb", lambda data: None)
    assert [outcome(c) for c in cases] == with_fast
    assert any(o[2] is not None for o in with_fast) and any(o[0] == "failed" for o in with_fast)


def test_without_imagecodecs_pillow_decodes_every_tile(monkeypatch):
    monkeypatch.setattr(fast_decode, "spng_decode", None)
    monkeypatch.setattr(fast_decode, "jpeg8_decode", None)
    for name in ("synthetic server png", "synthetic server jpeg"):
        assert fast_rgb(PLAIN[name]) is None
        np.testing.assert_array_equal(decode_tile(1, 2, 18, PLAIN[name]).image, pillow(PLAIN[name]))
