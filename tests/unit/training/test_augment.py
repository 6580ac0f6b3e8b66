"""Training augmentation: geometric changes move image and target together, photometric changes
never touch the target, and everything is a function of the generator."""

from __future__ import annotations

import numpy as np
import pytest

from looking_glass.training import augment
from looking_glass.training.augment import augment_batch, jpeg, nodata, photometric, zoom_crop


def _batch(n=6, size=32, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    masks = np.zeros((n, size, size), np.uint8)
    for i in range(n):
        y, x = rng.integers(2, size - 12, 2)
        masks[i, y:y + 8, x:x + 10] = 1
        images[i][masks[i] > 0] = 250  # the building is bright, so it can be followed
    return images, masks


def test_same_generator_same_result_and_shapes_kept():
    images, masks = _batch()
    a = augment_batch(images, masks, np.random.default_rng(5), mode="full")
    b = augment_batch(images, masks, np.random.default_rng(5), mode="full")
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert a[0].shape == images.shape and a[0].dtype == np.float32 and a[1].dtype == masks.dtype
    assert a[0].min() >= 0 and a[0].max() <= 255
    c = augment_batch(images, masks, np.random.default_rng(6), mode="full")
    assert not np.array_equal(a[0], c[0])


def test_inputs_are_not_modified():
    images, masks = _batch()
    before = images.copy(), masks.copy()
    augment_batch(images, masks, np.random.default_rng(0), mode="full")
    assert np.array_equal(images, before[0]) and np.array_equal(masks, before[1])


@pytest.mark.parametrize("mode", ["geometric", "photometric"])
def test_target_preserving_modes_keep_building_pixels(mode):
    images, masks = _batch()
    out_images, out_masks = augment_batch(images, masks, np.random.default_rng(1), mode=mode)
    assert sorted(out_masks.sum(axis=(1, 2))) == sorted(masks.sum(axis=(1, 2)))
    if mode == "geometric":  # pixels only move: the building stays where the target says
        assert (out_images[out_masks > 0] == 250).all()


def test_photometric_changes_never_change_the_target():
    images, masks = _batch(n=12)
    _, out = augment_batch(images, masks, np.random.default_rng(2), mode="photometric")
    for m, t in zip(masks, out):  # the target is only rotated / flipped, never altered
        variants = [np.rot90(m, k) for k in range(4)] + [np.rot90(m, k)[:, ::-1] for k in range(4)]
        assert any(np.array_equal(t, v) for v in variants)


def test_none_mode_changes_nothing_and_bad_mode_is_refused(monkeypatch):
    images, masks = _batch()
    out = augment_batch(images, masks, np.random.default_rng(0), mode="none")
    assert np.array_equal(out[0], images) and np.array_equal(out[1], masks)
    with pytest.raises(ValueError, match="augmentation mode"):
        augment_batch(images, masks, np.random.default_rng(0), mode="wild")
    monkeypatch.setenv("LOOKING_GLASS_AUGMENT", "none")
    out = augment_batch(images, masks, np.random.default_rng(0))
    assert np.array_equal(out[0], images)
    monkeypatch.delenv("LOOKING_GLASS_AUGMENT")
    assert augment.augment_mode() == "photometric"


def test_photometric_covers_grey_brightness_contrast_gamma_blur_noise():
    image = np.random.default_rng(0).uniform(0, 255, (32, 32, 3)).astype(np.float32)
    greys = 0
    seen_means, seen_stds = [], []
    for s in range(60):
        out = photometric(image, np.random.default_rng(s))
        assert out.shape == image.shape and out.dtype == np.float32 and 0 <= out.min() and out.max() <= 255
        if np.allclose(out[..., 0], out[..., 1]) and np.allclose(out[..., 1], out[..., 2]):
            greys += 1
        seen_means.append(out.mean())
        seen_stds.append(out.std())
    assert 15 <= greys <= 45  # about half the chips become panchromatic-looking
    assert max(seen_means) - min(seen_means) > 40  # brightness / gamma
    assert max(seen_stds) / min(seen_stds) > 1.5  # contrast, blur


def test_zoom_crop_scales_image_and_target_together():
    size = 64
    image = np.zeros((size, size, 3), np.float32)
    mask = np.zeros((size, size), np.uint8)
    mask[24:40, 24:40] = 1
    image[mask > 0] = 200
    rng = np.random.default_rng(0)
    img, t = zoom_crop(image, mask, 1.3, rng, binary=True)
    assert img.shape == image.shape and t.shape == mask.shape and set(np.unique(t)) <= {0, 1}
    assert t.sum() > mask.sum()  # buildings get bigger in pixels
    assert (img[t > 0] > 100).mean() > 0.9
    sdt = np.where(mask > 0, 2.0, -3.0).astype(np.float32)
    _, ts = zoom_crop(image, sdt, 1.2, np.random.default_rng(0), binary=False)
    assert ts.min() >= -3.0 and ts.max() <= 2.0  # metres stay metres (bilinear between them)


def test_nodata_blacks_out_a_wedge_and_clears_the_target():
    image = np.full((32, 32, 3), 100, np.float32)
    mask = np.ones((32, 32), np.uint8)
    for s in range(200):
        img, t = nodata(image, mask, np.random.default_rng(s), binary=True)
        if (img == 0).any():
            dark = (img == 0).all(-1)
            assert (t[dark] == 0).all() and (t[~dark] == 1).all()
            sdt = np.full((32, 32), 4.0, np.float32)
            sdt[0, 0] = -7.0
            _, ts = nodata(image, sdt, np.random.default_rng(s), binary=False)
            assert (ts[dark] == -7.0).all()
            return
    raise AssertionError("no no-data wedge in 200 draws")


def test_jpeg_keeps_grey_images_grey():
    grey = np.repeat(np.random.default_rng(0).uniform(0, 255, (32, 32, 1)), 3, axis=-1).astype(np.float32)
    out = jpeg(grey, 40)
    assert out.shape == grey.shape
    assert np.array_equal(out[..., 0], out[..., 2]) and not np.array_equal(out, grey)
    assert np.abs(out - grey).mean() < 40


def test_full_mode_keeps_sdt_targets_in_metres():
    images, masks = _batch()
    sdt = np.where(masks > 0, 3.0, -5.0).astype(np.float32)
    _, out = augment_batch(images, sdt, np.random.default_rng(3), mode="full")
    assert out.dtype == np.float32 and out.min() >= -5.0 and out.max() <= 3.0
