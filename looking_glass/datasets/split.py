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
the manifest with a warning): :func:`fitting_split_block`. The manifest's ``split_rule``
(:func:`split_rule`) and ``split_summary`` (:func:`split_summary`) then describe the per-chip
rule that was applied (:data:`PER_CHIP_RULE`) and say which block size was asked for.
"""

from __future__ import annotations

import hashlib

from looking_glass.grid import ZOOM

__all__ = ["PER_CHIP_RULE", "SPLITS", "SPLIT_RULE", "TILES_SPLIT_SOURCE", "block_split", "fit_split_block",
           "fitting_split_block", "split_rule", "split_summary"]

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


# The rule of split_block 1 (asked for, or the fallback of fitting_split_block): the same hash with
# each chip its own block, worded as what it is; neighbours are no longer kept together.
PER_CHIP_RULE = (
    "Split per chip{why}: each chip goes to validation when "
    "blake2b('{{seed}}|{{source}}|{{row}}|{{col}}', 8 bytes) read as a big-endian fraction of 2**64 is "
    "below val_fraction={val}, else to train (seed={seed}; row/col: native mode: the chip's row/column "
    "within the image, tiles mode: its zoom-{zoom} tile y/x; source is the image file name in native "
    "mode and '{tiles_source}' in tiles mode). Neighbouring chips may be in train and validation."
)


def split_rule(split_block: int, val_fraction: float, seed: int, asked_block: int | None = None) -> str:
    """The split rule that was applied, in the words the manifest records: :data:`SPLIT_RULE` for
    blocks (``split_block`` > 1), :data:`PER_CHIP_RULE` for ``split_block`` 1, which says that
    ``asked_block`` (the ``--split-block`` given, when it was not 1) gave too few blocks for both
    splits."""
    fill = {"zoom": ZOOM, "val": val_fraction, "seed": seed, "tiles_source": TILES_SPLIT_SOURCE}
    if split_block > 1:
        return SPLIT_RULE.format(block=split_block, **fill)
    why = "" if asked_block in (None, 1) else (
        f" (blocks of {asked_block} x {asked_block} chips, --split-block {asked_block}, were asked for, but the "
        "chips made too few of them for both splits)")
    return PER_CHIP_RULE.format(why=why, **fill)


def split_summary(split_block: int, asked_block: int | None = None) -> str:
    """The applied split in a few words, for prepare's last line and the manifest's
    ``split_summary``: ``split in blocks of 4 x 4 chips``, ``split per chip``, or ``split per
    chip (too few chips for blocks of 4 x 4)`` after the fallback from ``asked_block``."""
    if split_block > 1:
        return f"split in blocks of {split_block} x {split_block} chips"
    if asked_block in (None, 1):
        return "split per chip"
    return f"split per chip (too few chips for blocks of {asked_block} x {asked_block})"


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
