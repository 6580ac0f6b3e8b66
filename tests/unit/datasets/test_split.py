"""The train/validation split rule."""

import hashlib

from looking_glass.datasets.split import SPLIT_RULE, TILES_SPLIT_SOURCE, block_split, split_rule, split_summary


def test_block_split_is_the_documented_hash():
    digest = hashlib.blake2b(b"7|img.tif|1|2", digest_size=8).digest()
    u = int.from_bytes(digest, "big") / 2.0**64
    expected = "validation" if u < 0.3 else "train"
    assert block_split("img.tif", 4, 9, split_block=4, val_fraction=0.3, seed=7) == expected


def test_chips_of_one_block_share_a_split_and_extremes_are_absolute():
    splits = {block_split("a", r, c, split_block=4, val_fraction=0.5) for r in range(8, 12) for c in range(4, 8)}
    assert len(splits) == 1
    assert block_split("a", 0, 0, split_block=1, val_fraction=0.0) == "train"
    assert block_split("a", 0, 0, split_block=1, val_fraction=1.0) == "validation"


def test_rule_in_words():
    assert TILES_SPLIT_SOURCE == "web-mercator-z18"
    text = split_rule(4, 0.2, 0)
    assert "blocks of 4 x 4" in text and "val_fraction=0.2" in text and TILES_SPLIT_SOURCE in text
    assert "{" not in text.replace("{seed}", "").replace("{source}", "").replace("{block_row}", "").replace("{block_col}", "")
    assert SPLIT_RULE.count("{block}") == 2


def test_per_chip_rule_in_words():
    """--split-block 1 given is worded as per chip (no block size asked for); after the fallback the
    rule names the size that was asked for."""
    asked = split_rule(1, 0.2, 0)
    assert asked.startswith("Split per chip: ") and "asked for" not in asked and "never straddle" not in asked
    fallback = split_rule(1, 0.2, 0, asked_block=4)
    assert "blocks of 4 x 4 chips, --split-block 4, were asked for" in fallback
    assert split_rule(4, 0.2, 0, asked_block=4) == split_rule(4, 0.2, 0)
    assert (split_summary(4), split_summary(1), split_summary(1, 1)) == (
        "split in blocks of 4 x 4 chips", "split per chip", "split per chip")
