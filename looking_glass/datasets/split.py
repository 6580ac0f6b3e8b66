"""The train/validation split of training chips: whole blocks of neighbouring chips, by hash.

Chips are grouped into blocks of ``split_block`` x ``split_block`` chips on their grid (native
mode: chip row/column in the image; tiles mode: tile y/x at zoom 18). A whole block goes to
validation when ``blake2b(f"{seed}|{source}|{block_row}|{block_col}")`` read as a number in
[0, 1) is below ``val_fraction``, else to train. Neighbouring chips in a block never straddle
train and validation, and the assignment of a block never depends on other inputs. ``source``
is the image's file name in native mode and the shared grid name ``TILES_SPLIT_SOURCE``
(``web-mercator-z18``) in tiles mode, so the same tile from two overlapping images lands in the
same split. :data:`SPLIT_RULE` says the same in the words the manifest records.
"""

from __future__ import annotations

import hashlib

from looking_glass.grid import ZOOM

__all__ = ["SPLITS", "SPLIT_RULE", "TILES_SPLIT_SOURCE", "block_split", "split_rule"]

SPLITS = ("train", "validation")
TILES_SPLIT_SOURCE = f"web-mercator-z{ZOOM}"

SPLIT_RULE = (
    "Chips are grouped into blocks of {block} x {block} chips on their grid (native mode: chip "
    "row/column within the image; tiles mode: zoom-{zoom} tile y/x). A whole block goes to "
    "validation when blake2b('{{seed}}|{{source}}|{{block_row}}|{{block_col}}', 8 bytes) read as a "
    "big-endian fraction of 2**64 is below val_fraction={val}, else to train (seed={seed}; source "
    "is the image file name in native mode and '{tiles_source}' in tiles mode). Neighbouring chips "
    "in a block never straddle train and validation."
)


def split_rule(split_block: int, val_fraction: float, seed: int) -> str:
    """:data:`SPLIT_RULE` filled in with these parameters (what the manifest records)."""
    return SPLIT_RULE.format(
        block=split_block, zoom=ZOOM, val=val_fraction, seed=seed, tiles_source=TILES_SPLIT_SOURCE
    )


def block_split(source: str, row: int, col: int, *, split_block: int, val_fraction: float, seed: int = 0) -> str:
    """The split of the chip at grid position (row, col) of ``source`` (see SPLIT_RULE)."""
    block_row, block_col = row // split_block, col // split_block
    digest = hashlib.blake2b(f"{seed}|{source}|{block_row}|{block_col}".encode(), digest_size=8).digest()
    u = int.from_bytes(digest, "big") / 2.0**64
    return "validation" if u < val_fraction else "train"
