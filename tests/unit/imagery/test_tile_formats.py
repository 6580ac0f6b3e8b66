"""Every pixel format a tile server may send becomes a correct RGB tile or a ``failed`` tile with
its reason (issue 16, "Tiles from servers"); inputs from tests/data/cases/tiles-* and made here."""

import io
import random
import time
import warnings

import numpy as np
import pytest
from conftest import TESTS_DIR
from PIL import Image

from looking_glass.imagery.raster import stretch_limits, stretch_to_uint8
from looking_glass.imagery.tiles import decode_tile

CASES = TESTS_DIR / "data" / "cases"

# A scene with structure: a bright square roof on darker, textured ground.
_rng = np.random.default_rng(16)
SCENE = (60 + _rng.integers(0, 40, (256, 256))).astype(np.uint8)
SCENE[96:160, 96:160] = 220
ROOF = (slice(100, 156), slice(100, 156))
GROUND = (slice(0, 80), slice(0, 80))


def encode(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def png16(bands: np.ndarray) -> bytes:
    """A 16-bit PNG of (n, 256, 256) uint16 bands (1 grey, 2 grey+alpha, 3 RGB, 4 RGBA), by GDAL."""
    from rasterio.errors import NotGeoreferencedWarning
    from rasterio.io import MemoryFile

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with MemoryFile() as mem:
            with mem.open(driver="PNG", width=256, height=256, count=len(bands), dtype="uint16") as dst:
                dst.write(bands)
            return mem.read()


def decoded(data: bytes) -> np.ndarray:
    tile = decode_tile(1, 2, 18, data)
    assert tile.image is not None, (tile.status, tile.reason)
    assert tile.image.shape == (256, 256, 3) and tile.image.dtype == np.uint8
    return tile.image


def assert_contrast_kept(rgb: np.ndarray) -> None:
    """The roof stays clearly brighter than the ground; the ground neither black nor white."""
    grey = rgb.astype(float).mean(-1)
    roof, ground = grey[ROOF].mean(), grey[GROUND].mean()
    assert roof - ground > 80, (roof, ground)
    assert 0 < ground < 200 and np.median(grey) < 250


# ---- 8-bit modes ----------------------------------------------------------------------------
RGB8 = np.stack([SCENE, (SCENE * 0.9).astype(np.uint8), (SCENE * 0.8).astype(np.uint8)], -1)


@pytest.mark.parametrize(
    "name, data",
    [
        ("grey", encode(Image.fromarray(SCENE, "L"))),
        ("rgb", encode(Image.fromarray(RGB8, "RGB"))),
        ("rgba", encode(Image.fromarray(np.dstack([RGB8, np.full(SCENE.shape, 255, np.uint8)]), "RGBA"))),
        ("grey+alpha", encode(Image.fromarray(np.dstack([SCENE, np.full(SCENE.shape, 255, np.uint8)]), "LA"))),
        ("palette", encode(Image.fromarray(RGB8, "RGB").quantize(64))),
        ("jpeg", encode(Image.fromarray(RGB8, "RGB"), "JPEG", quality=95)),
        ("cmyk-jpeg", encode(Image.fromarray(RGB8, "RGB").convert("CMYK"), "JPEG", quality=95)),
        ("webp", encode(Image.fromarray(RGB8, "RGB"), "WEBP", quality=95)),
        ("webp-lossless-rgba", encode(Image.fromarray(np.dstack([RGB8, np.full(SCENE.shape, 255, np.uint8)]), "RGBA"), "WEBP", lossless=True)),
        ("gif", encode(Image.fromarray(RGB8, "RGB").quantize(64), "GIF")),
    ],
)
def test_every_8bit_mode_becomes_the_same_rgb_picture(name, data):
    rgb = decoded(data)
    assert_contrast_kept(rgb)
    assert np.abs(rgb.astype(int).mean(-1) - RGB8.astype(int).mean(-1)).mean() < 12, name


def test_palette_transparency_and_alpha_zero_are_nodata_black():
    pal = Image.fromarray(RGB8, "RGB").quantize(64)
    arr = np.asarray(pal).copy()
    arr[:, :128] = 63  # the left half in the transparent palette entry
    pal2 = Image.fromarray(arr, "P")
    pal2.putpalette(pal.getpalette())
    rgb = decoded(encode(pal2, transparency=63))
    assert (rgb[:, :128] == 0).all() and rgb[:, 128:].mean() > 30
    rgba = np.dstack([RGB8, np.full(SCENE.shape, 255, np.uint8)])
    rgba[:, :128, 3] = 0
    rgb = decoded(encode(Image.fromarray(rgba, "RGBA")))
    assert (rgb[:, :128] == 0).all() and (rgb[:, 128:] == RGB8[:, 128:]).all()


def test_rgb_png_is_exact_writeable_and_wholly_valid():
    tile = decode_tile(1, 2, 18, encode(Image.fromarray(RGB8, "RGB")))
    assert (tile.image == RGB8).all() and tile.valid_fraction == 1.0
    tile.image[0, 0] = 0  # callers may draw on it, as on the other modes' tiles


def test_rgb_png_with_a_transparent_colour_is_nodata_there():
    rgb8 = RGB8.copy()
    rgb8[:, :128] = (1, 2, 3)  # tRNS: this colour is transparent
    tile = decode_tile(1, 2, 18, encode(Image.fromarray(rgb8, "RGB"), transparency=(1, 2, 3)))
    assert (tile.image[:, :128] == 0).all() and (tile.image[:, 128:] == RGB8[:, 128:]).all()
    assert tile.valid_fraction == 0.5


@pytest.mark.parametrize("row, col", [(0, 1), (1, 1), (255, 255), (17, 33)])
def test_one_differing_pixel_anywhere_makes_a_tile_not_blank(row, col):
    flat = np.full((256, 256, 3), 90, np.uint8)
    assert decode_tile(1, 2, 18, encode(Image.fromarray(flat, "RGB"))).status == "skipped"
    flat[row, col, 2] = 91
    assert decode_tile(1, 2, 18, encode(Image.fromarray(flat, "RGB"))).image is not None


def test_fully_transparent_palette_and_16bit_tiles_are_skipped():
    pal = Image.new("P", (256, 256), 0)
    pal.putpalette([10, 20, 30] * 256)
    assert decode_tile(0, 0, 18, encode(pal, transparency=0)).status == "skipped"
    clear = np.zeros((4, 256, 256), np.uint16)
    clear[:3] = 500
    assert decode_tile(0, 0, 18, png16(clear)).status == "skipped"


def test_exif_orientation_is_applied():
    upright = RGB8.copy()
    upright[:40, :40] = (250, 0, 0)  # a red mark top-left, as shown upright
    # Stored rotated; EXIF orientation 6 says "rotate 90 degrees clockwise to show".
    stored = Image.fromarray(upright, "RGB").transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    rgb = decoded(encode(stored, "JPEG", quality=95, exif=exif.tobytes()))
    assert rgb[:40, :40, 0].mean() > 200 and rgb[:40, :40, 1].mean() < 60
    assert rgb[-40:, :40, 0].mean() < 150  # the mark is not anywhere else


# ---- 16 bits --------------------------------------------------------------------------------
def test_16bit_grey_and_rgba_from_a_server_keep_their_contrast():
    """tests/data/cases/tiles-16bit-png: values 200..3000, never clipped white or cut to a high byte."""
    for name in ("grey16.png", "rgba16.png"):
        assert_contrast_kept(decoded((CASES / "tiles-16bit-png" / name).read_bytes()))


@pytest.mark.parametrize("count", [1, 2, 3, 4])
def test_16bit_png_of_every_colour_type_uses_the_geotiff_stretch(count):
    scene16 = SCENE.astype(np.uint16) * 12  # 720..3060
    bands = [scene16] * (1 if count < 3 else 3)
    if count in (2, 4):
        alpha = np.full(SCENE.shape, 65535, np.uint16)
        alpha[:, :64] = 0
        bands.append(alpha)
    rgb = decoded(png16(np.stack(bands)))
    assert_contrast_kept(rgb)
    if count in (2, 4):
        assert (rgb[:, :64] == 0).all()
    # The same rule as a GeoTIFF's (imagery.raster): per-band 2-98 percentiles of valid pixels.
    data = np.stack([scene16] * 3).astype(np.float32)
    valid = np.ones(SCENE.shape, bool)
    if count in (2, 4):
        valid[:, :64] = False
        data[:, ~valid] = np.nan
    expected = stretch_to_uint8(data, stretch_limits(data, valid))
    assert (rgb == expected).all()


# ---- hostile and broken -----------------------------------------------------------------------
def test_a_corrupt_chunk_is_a_failed_tile_not_an_exception():
    """tests/data/cases/tiles-hostile: Pillow raises SyntaxError on this chunk."""
    tile = decode_tile(1, 2, 18, (CASES / "tiles-hostile" / "truncated_chunk.png.bin").read_bytes())
    assert tile.status == "failed" and "not a decodable image" in tile.reason


def test_a_decompression_bomb_is_refused_from_its_header(monkeypatch):
    data = (CASES / "tiles-hostile" / "bomb_20000x20000_rgba.png").read_bytes()
    t0 = time.monotonic()
    tile = decode_tile(1, 2, 18, data)
    assert tile.status == "failed" and time.monotonic() - t0 < 1
    # Below Pillow's own bomb limit, the declared size alone refuses it: nothing is decoded.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    loads = []
    monkeypatch.setattr(Image.Image, "load", lambda self: loads.append(1))
    tile = decode_tile(1, 2, 18, data)
    assert tile.status == "failed" and "20000x20000" in tile.reason and not loads


def test_other_formats_are_failed_with_a_reason():
    for fmt in ("BMP", "TIFF"):
        tile = decode_tile(0, 0, 18, encode(Image.fromarray(RGB8, "RGB"), fmt))
        assert tile.status == "failed" and "not PNG, JPEG, WebP or GIF" in tile.reason


def test_mangled_bytes_never_raise():
    """Random damage to valid tiles of each format: always a FetchedTile, never an exception."""
    rnd = random.Random(16)
    sources = [
        encode(Image.fromarray(RGB8, "RGB")),
        encode(Image.fromarray(RGB8, "RGB"), "JPEG"),
        encode(Image.fromarray(RGB8, "RGB"), "WEBP"),
        png16(np.stack([SCENE.astype(np.uint16) * 10] * 4)),
    ]
    for _ in range(150):
        data = bytearray(rnd.choice(sources))
        for _ in range(rnd.randint(1, 8)):
            data[rnd.randrange(len(data))] = rnd.randrange(256)
        if rnd.random() < 0.3:
            data = data[: rnd.randrange(len(data))]
        tile = decode_tile(0, 0, 18, bytes(data))
        assert tile.image is not None or (tile.status in ("failed", "skipped") and tile.reason)
