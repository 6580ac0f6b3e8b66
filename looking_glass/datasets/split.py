"""The train/validation split of training chips: whole blocks of neighbouring chips, by hash.

Chips are grouped into blocks of ``split_block`` x ``split_block`` chips on their grid (native
mode: chip row/column in the image; tiles mode: tile y/x at zoom 18). A whole block goes to
validation when ``blake2b(f"{seed}|{source}|{block_row}|{block_col}")`` read as a number in
[0, 1) is below ``val_fraction``, else to train. Neighbouring chips in a block never straddle
train and validation, and the assignment of a block never depends on other inputs. ``source``
is the image's file name in native mode and the shared grid name ``TILES_SPLIT_SOURCE``
(``web-mercator-z18``) in tiles mode, so the same tile from two overlapping images lands in the
same split. :data:`SPLIT_RULE` says the same in the words the manifest records.

When the chips are too few for whole blocks to give both splits (one small image: its 9 chips are
one 4 x 4 block, all train), ``prepare`` splits per chip instead (``split_block`` 1, recorded in
the manifest with a warning): :func:`fitting_split_block`.
"""

from __future__ import annotations

import hashlib

from looking_glass.grid import ZOOM

__all__ = ["SPLITS", "SPLIT_RULE", "TILES_SPLIT_SOURCE", "block_split", "fit_split_block", "fitting_split_block", "split_rule"]

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


def fitting_split_block(cells, split_block: int, val_fraction: float, seed: int = 0) -> int:
    """The block size to split chips at ``cells`` (``(source, row, col)`` of each candidate chip,
    as :func:`block_split` takes them) with: ``split_block`` when its blocks put chips in every
    split that ``val_fraction`` asks for (train when it is below 1, validation when above 0),
    else 1 (each chip its own block: neighbours may then straddle the splits, the price of a
    dataset too small for blocks). ``split_block`` as well when there are no cells."""
    wanted = {name for name, on in (("train", val_fraction < 1), ("validation", val_fraction > 0)) if on}
    cells = list(cells)
    if not cells or split_block == 1:
        return split_block
    got = {block_split(src, r, c, split_block=split_block, val_fraction=val_fraction, seed=seed) for src, r, c in cells}
    return split_block if wanted <= got else 1


def fit_split_block(cells, split_block: int, val_fraction: float, seed: int = 0) -> tuple[int, list[str]]:
    """(:func:`fitting_split_block`, and the warning that says so when it is not ``split_block``:
    a list of none or one), for ``prepare`` to record and print once."""
    cells = list(cells)
    block = fitting_split_block(cells, split_block, val_fraction, seed)
    if block == split_block:
        return block, []
    return block, [f"the {len(cells)} candidate chips make too few blocks of --split-block {split_block} for both "
                   "splits: split per chip (--split-block 1) instead, so neighbouring chips may be in train and validation"]
