"""The usual tile decoded faster: a plain 8-bit RGB PNG by libspng, a plain colour JPEG by
libjpeg-turbo, both through ``imagecodecs``; every other tile goes to Pillow.

Decoding is the worker's largest CPU cost after the model (docs/benchmarks.md#worker): Pillow
takes 1.8 ms for a 116 KB synthetic PNG tile, libspng 1.3 ms (its unfiltering is faster; the
inflate is zlib's in both), and a JPEG tile 0.5-0.7 ms against 0.3 ms. The fast path gives the
very array Pillow's path of :func:`looking_glass.imagery.tiles.decode_tile` gives (tested pixel
for pixel: ``tests/unit/imagery/test_fast_decode.py``), so it is taken only where no rule of that
path can apply: a PNG whose chunks are only those that change no pixel in Pillow (no
transparency, palette, EXIF or text that may hold an orientation, no animation), a JPEG with
three components, 8-bit samples, no APP1 (EXIF or XMP: an orientation) or Adobe (colour
transform) segment and its end-of-image marker last. Anything else, and any error of the fast decoder (a bad CRC, which Pillow does
not check for image data, truncated or corrupt data), returns None and Pillow decides, so a
broken tile gets Pillow's reason as before. Without ``imagecodecs`` (it is in the ``imagery``
extra) every tile goes to Pillow.
"""

from __future__ import annotations

import numpy as np

from looking_glass.grid import TILE_SIZE

try:  # an optional speed-up: Pillow decodes every tile without it
    from imagecodecs import jpeg8_decode, spng_decode
except ImportError:  # pragma: no cover - the imagery extra installs it
    jpeg8_decode = spng_decode = None

__all__ = ["fast_rgb"]

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Chunks that change no pixel Pillow gives (colour space, gamma and ICC data are not applied by
# Pillow, nor by libspng as imagecodecs calls it); any other (tRNS, PLTE, eXIf, tEXt/zTXt/iTXt
# which may carry EXIF or XMP orientation, acTL/fcTL of an APNG, unknown ones) means Pillow.
_PLAIN_PNG_CHUNKS = frozenset({b"IHDR", b"IDAT", b"IEND", b"sRGB", b"gAMA", b"cHRM", b"iCCP", b"pHYs", b"sBIT", b"tIME"})
_PNG_RGB8 = bytes([8, 2, 0, 0])  # IHDR: bit depth 8, colour type 2 (RGB), deflate, filter 0
# JPEG frames a plain decode handles the same: baseline, extended and progressive Huffman.
_JPEG_FRAMES = frozenset({0xC0, 0xC1, 0xC2})
_JPEG_APP1, _JPEG_APP14, _JPEG_SOS = 0xE1, 0xEE, 0xDA


def fast_rgb(data: bytes) -> np.ndarray | None:
    """The (256, 256, 3) uint8 RGB array of a plain PNG or JPEG tile (see the module docstring),
    a new writeable array identical to Pillow's; None when the tile is not plain, the fast
    decoder is not installed or it fails: then Pillow must decode it. Never raises."""
    try:
        if data[:8] == _PNG_SIGNATURE:
            if spng_decode is None or not _plain_png(data):
                return None
            rgb = spng_decode(data)
        elif data[:2] == b"\xff\xd8":
            if jpeg8_decode is None or not _plain_jpeg(data):
                return None
            rgb = jpeg8_decode(data)
        else:
            return None
    except Exception:  # noqa: BLE001 - any decoder error: Pillow decodes it and gives the reason
        return None
    if rgb.shape != (TILE_SIZE, TILE_SIZE, 3) or rgb.dtype != np.uint8 or not rgb.flags.writeable:
        return None
    return rgb


def _plain_png(data: bytes) -> bool:
    """True for a complete 256x256 8-bit RGB PNG with only :data:`_PLAIN_PNG_CHUNKS`."""
    pos, end, first = 8, len(data), True
    while pos + 12 <= end:
        length = int.from_bytes(data[pos : pos + 4], "big")
        kind = data[pos + 4 : pos + 8]
        if kind not in _PLAIN_PNG_CHUNKS or pos + 12 + length > end:
            return False
        if first:
            ihdr = data[pos + 8 : pos + 8 + length]
            if kind != b"IHDR" or length != 13 or ihdr[8:12] != _PNG_RGB8:
                return False
            if int.from_bytes(ihdr[0:4], "big") != TILE_SIZE or int.from_bytes(ihdr[4:8], "big") != TILE_SIZE:
                return False
            first = False
        if kind == b"IEND":
            return True
        pos += 12 + length
    return False  # no IEND: truncated


def _plain_jpeg(data: bytes) -> bool:
    """True for a 256x256 JPEG with three 8-bit components in a baseline, extended or progressive
    Huffman frame, no APP1 or APP14 segment before its first scan, that ends with its EOI marker
    (libjpeg-turbo fills a truncated scan with grey where Pillow reports a truncated file)."""
    if not data.endswith(b"\xff\xd9"):
        return False
    pos, end, frame = 2, len(data), False
    while pos + 4 <= end:
        if data[pos] != 0xFF:
            return False
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == _JPEG_SOS:
            return frame
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if length < 2 or pos + 2 + length > end or marker in (_JPEG_APP1, _JPEG_APP14):
            return False
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # a frame header (SOFn)
            seg = data[pos + 4 : pos + 2 + length]
            if frame or marker not in _JPEG_FRAMES or len(seg) < 6:
                return False
            size = (int.from_bytes(seg[1:3], "big"), int.from_bytes(seg[3:5], "big"))
            if seg[0] != 8 or size != (TILE_SIZE, TILE_SIZE) or seg[5] != 3:
                return False
            frame = True
        pos += 2 + length
    return False
