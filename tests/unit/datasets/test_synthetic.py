import io

import numpy as np
from PIL import Image

from looking_glass.datasets.synthetic import png_bytes, render_tile


def test_tiles_are_deterministic_per_address():
    a_img, a_mask = render_tile(18, 152950, 132486)
    b_img, b_mask = render_tile(18, 152950, 132486)
    c_img, _ = render_tile(18, 152951, 132486)
    assert np.array_equal(a_img, b_img) and np.array_equal(a_mask, b_mask)
    assert not np.array_equal(a_img, c_img)


def test_tiles_look_like_rgb_imagery_with_buildings():
    masks = [render_tile(18, 152950 + i, 132486)[1] for i in range(6)]
    img, mask = render_tile(18, 152950, 132486)
    assert img.shape == (256, 256, 3) and img.dtype == np.uint8 and mask.shape == (256, 256)
    assert img.std() > 10  # not flat
    fractions = [m.mean() for m in masks]
    assert max(fractions) > 0.02  # some tiles have buildings
    assert all(f < 0.6 for f in fractions)


def test_roof_pixels_differ_from_their_surroundings():
    img, mask = render_tile(18, 152950, 132486)
    assert mask.any()
    roof = img[mask].mean(axis=0)
    ground = img[~mask].mean(axis=0)
    assert np.abs(roof - ground).sum() > 10


def test_png_round_trip():
    img, _ = render_tile(18, 5, 5)
    back = np.asarray(Image.open(io.BytesIO(png_bytes(img))))
    assert np.array_equal(back, img)
