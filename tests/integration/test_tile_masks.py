"""looking_glass.results.masks: the one reader of stored tile masks, against moto S3."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from looking_glass.results.masks import MaskError, read_tile_mask, read_tile_masks


def _png(mask: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8) * 255).save(buf, format="PNG")
    return buf.getvalue()


def test_masks_are_read_back_in_order_and_bad_ones_are_one_clear_error(aws):
    session, names, resources = aws
    s3, bucket = session.client("s3"), resources.masks_bucket
    masks = []
    items = []
    for i in range(40):  # more than one look-ahead batch of read_tile_masks(threads=2)
        m = np.zeros((256, 256), bool)
        m[i:i + 10, 3 * i:3 * i + 5] = True
        masks.append(m)
        s3.put_object(Bucket=bucket, Key=f"masks/j/18/{i}/7.png", Body=_png(m))
        items.append({"x": i, "y": 7, "z": 18, "mask_key": f"masks/j/18/{i}/7.png"})
    got = list(read_tile_masks(s3, bucket, items, threads=2))
    assert [g[0]["x"] for g in got] == list(range(40))
    assert all(np.array_equal(g[1], m) for g, m in zip(got, masks))

    with pytest.raises(MaskError, match="tile 18/1/2 has no stored mask"):
        read_tile_mask(s3, bucket, {"x": 1, "y": 2, "z": 18})
    with pytest.raises(MaskError, match="cannot read the mask"):
        read_tile_mask(s3, bucket, {"x": 1, "y": 2, "z": 18, "mask_key": "masks/j/none.png"})
    s3.put_object(Bucket=bucket, Key="masks/j/bad.png", Body=b"not a png")
    with pytest.raises(MaskError, match="not a readable PNG"):
        read_tile_mask(s3, bucket, {"x": 1, "y": 2, "z": 18, "mask_key": "masks/j/bad.png"})
