"""One tile from an imagery source: what it holds, how bytes are decoded, when it is blank.

The vocabulary both imagery sources (:mod:`looking_glass.imagery.xyz` over HTTP,
:mod:`looking_glass.imagery.geotiff` from a GeoTIFF/COG) hand the worker. A tile is an image
(256 x 256 RGB uint8), or a final status from :mod:`looking_glass.imagery.status` with a reason;
:class:`TransientTileError` means it cannot be had now and must be retried later.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from looking_glass.grid import TILE_SIZE
from looking_glass.imagery.fast_decode import fast_rgb
from looking_glass.imagery.raster import stretch_limits, stretch_to_uint8
from looking_glass.imagery.status import TILE_FAILED, TILE_SKIPPED

__all__ = ["TILE_FORMATS", "FetchedTile", "TransientTileError", "classify_rgb", "decode_tile"]


class TransientTileError(RuntimeError):
    """The tile cannot be read now (network, throttling, refused token): retry later, never a
    final status."""


@dataclass
class FetchedTile:
    """One tile from an imagery source: an image, or a final status (``imagery.status``) and
    its reason."""

    x: int
    y: int
    z: int
    image: np.ndarray | None = None  # (256, 256, 3) uint8 when the tile has imagery
    status: str | None = None  # set when there is no image: no_imagery, skipped, failed
    reason: str | None = None
    # Share of the tile's pixels holding imagery (0-1), set with an image: what densities divide by.
    valid_fraction: float | None = None
    # When the imagery was captured (YYYY-MM-DD; a mosaic's images used, newest first, joined
    # by ","), where the source knows it.
    capture_date: str | None = None


# What a tile server may send (Pillow format names); anything else is a failed tile.
TILE_FORMATS = ("PNG", "JPEG", "WEBP", "GIF")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def decode_tile(x: int, y: int, z: int, data: bytes) -> FetchedTile:
    """Image bytes from a tile server to a FetchedTile (the rules are docs/imagery.md "Tiles
    from servers"):

    * PNG, JPEG, WebP or GIF (the first frame); anything else is ``failed``.
    * The declared size is checked from the header before anything is decoded: not 256x256 is
      ``failed`` (so a small file declaring 20000 x 20000 px is never decompressed).
    * 8-bit images of any mode (grey, grey+alpha, palette with or without transparency, RGB,
      RGBA, CMYK, YCbCr) become RGB by Pillow's conversion; a JPEG's EXIF orientation is applied.
    * 16-bit (and 32-bit integer or float) images are brought to 8 bits by the per-band linear
      percentile stretch GeoTIFFs get (:func:`looking_glass.imagery.raster.stretch_limits`),
      computed on the tile's valid pixels: so contrast is kept, never clipped or cut to a high
      byte.
    * Transparent pixels (alpha 0, or the PNG's transparent colour) are nodata: black in the
      image; a fully transparent tile is ``skipped``; one colour is ``skipped``.
    * A plain 8-bit RGB PNG or colour JPEG is decoded by libspng or libjpeg-turbo
      (:mod:`looking_glass.imagery.fast_decode`), to the same array Pillow gives.
    * Any error of the decoder (truncated data, a corrupt chunk: Pillow and GDAL raise many kinds
      of exceptions) makes the tile ``failed`` with the reason; this function never raises.
    """
    try:
        return _decode(x, y, z, data)
    except Exception as exc:  # noqa: BLE001 - the decode boundary: every decoder error is the tile's
        return _failed(x, y, z, f"not a decodable image: {type(exc).__name__}: {exc}")


def _failed(x: int, y: int, z: int, reason: str) -> FetchedTile:
    return FetchedTile(x, y, z, status=TILE_FAILED, reason=reason[:300])


def _decode(x: int, y: int, z: int, data: bytes) -> FetchedTile:
    rgb = fast_rgb(data)  # the usual tile, as Pillow would decode it, only faster
    if rgb is not None:
        return classify_rgb(x, y, z, rgb)
    try:
        img = Image.open(io.BytesIO(data), formats=TILE_FORMATS)
    except UnidentifiedImageError:
        return _failed(x, y, z, "not a decodable image: not PNG, JPEG, WebP or GIF")
    except Image.DecompressionBombError as exc:
        return _failed(x, y, z, f"declared size refused before decoding: {exc}")
    with img:
        if img.size != (TILE_SIZE, TILE_SIZE):  # from the header: nothing decoded yet
            return _failed(x, y, z, f"tile is {img.size[0]}x{img.size[1]}, not {TILE_SIZE}x{TILE_SIZE}")
        if _png_bit_depth(data) == 16 and img.mode not in ("I;16", "I;16B", "I;16L", "I"):
            # Pillow reads 16-bit colour PNGs as their high bytes only: GDAL reads all 16 bits.
            samples, valid = _read_16bit_png(data, img.info.get("transparency"))
        else:
            img.load()
            # In place: the usual tile has no EXIF orientation, and a copy would be the only work.
            ImageOps.exif_transpose(img, in_place=True)
            if img.size != (TILE_SIZE, TILE_SIZE):
                return _failed(x, y, z, f"tile is {img.size[0]}x{img.size[1]}, not {TILE_SIZE}x{TILE_SIZE}")
            if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
                grey = np.asarray(img).astype(np.float32)
                samples = np.stack([grey] * 3)
                valid = np.ones(grey.shape, bool)
                trns = img.info.get("transparency")
                if isinstance(trns, (int, float)):
                    valid &= grey != trns
            elif img.mode == "RGB" and "transparency" not in img.info:
                # Every pixel holds imagery (the usual tile): no alpha to build, mask or count.
                return classify_rgb(x, y, z, np.array(img))  # a writeable copy, as the other paths give
            else:
                rgba = np.asarray(img.convert("RGBA"))
                valid = rgba[..., 3] > 0
                if not valid.any():
                    return FetchedTile(x, y, z, status=TILE_SKIPPED, reason="fully transparent (nodata)")
                rgb = rgba[..., :3].copy()
                rgb[~valid] = 0
                return classify_rgb(x, y, z, rgb, valid)
    valid &= np.isfinite(samples).all(0)
    if not valid.any():
        return FetchedTile(x, y, z, status=TILE_SKIPPED, reason="fully transparent (nodata)")
    stretch = stretch_limits(samples, valid & (samples != 0).any(0))
    samples[:, ~valid] = np.nan
    return classify_rgb(x, y, z, stretch_to_uint8(samples, stretch), valid)


def _png_bit_depth(data: bytes) -> int | None:
    """The bit depth in a PNG's IHDR chunk (which the PNG standard puts first), else None."""
    if data[:8] == _PNG_SIGNATURE and data[12:16] == b"IHDR" and len(data) >= 25:
        return data[24]
    return None


def _read_16bit_png(data: bytes, transparency) -> tuple[np.ndarray, np.ndarray]:
    """(3, 256, 256) float32 samples and (256, 256) validity of a 16-bit grey+alpha, RGB or RGBA
    PNG (its size already checked), read by GDAL; ``transparency`` is the PNG's transparent
    colour (tRNS, as Pillow read it) if any."""
    from rasterio.enums import ColorInterp
    from rasterio.errors import NotGeoreferencedWarning
    from rasterio.io import MemoryFile

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)  # a tile has no geotransform
        with MemoryFile(data) as mem, mem.open(driver="PNG") as src:
            bands = src.read().astype(np.float32)
            interp = list(src.colorinterp)
    alpha = [i for i, c in enumerate(interp) if c == ColorInterp.alpha]
    colour = [i for i in range(len(interp)) if i not in alpha]
    valid = np.ones(bands.shape[1:], bool)
    if alpha:
        valid &= bands[alpha[0]] > 0
    if len(colour) == 1:
        samples = bands[[colour[0]] * 3]
    elif len(colour) == 3:
        samples = bands[colour]
    else:
        raise ValueError(f"a 16-bit PNG with {len(interp)} bands")
    if transparency is not None:
        key = np.atleast_1d(np.asarray(transparency, np.float32))
        if key.size in (1, 3):
            valid &= ~(samples == key.reshape(-1, 1, 1)).all(0)
    return samples, valid


def classify_rgb(x: int, y: int, z: int, rgb: np.ndarray, valid: np.ndarray | None = None) -> FetchedTile:
    """A (256, 256, 3) uint8 tile with some data: an image, or ``skipped`` when it is blank.
    ``valid`` is the (256, 256) bool mask of pixels holding imagery (None: all of them); its
    mean is the tile's ``valid_fraction``."""
    # A sparse sample first: a tile with any detail differs there, and only a tile uniform in
    # the sample needs the full comparison.
    if (rgb[::16, ::16] == rgb[0, 0]).all() and (rgb == rgb[0, 0]).all():
        return FetchedTile(x, y, z, status=TILE_SKIPPED, reason="blank (single colour)")
    fraction = 1.0 if valid is None else float(np.count_nonzero(valid)) / valid.size
    return FetchedTile(x, y, z, image=np.ascontiguousarray(rgb), valid_fraction=fraction)
