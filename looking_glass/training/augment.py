"""Training augmentation: random changes of a chip that keep its building mask true.

Images are arrays (N, H, W, 3) in 0..255 (uint8 or float), targets (N, H, W) in the head's units
(0/1 for the binary head, metres for the signed-distance head). Two kinds of change:

- geometric, applied to image and target alike: random 90-degree rotation, horizontal flip and
  a zoom of 1..1.35x (a random crop resampled to the chip size; the imagery's ground sample
  distance varies; a signed distance in metres stays a distance in metres);
- photometric, which never changes the target: grey (a random mix of the bands in all three, as a
  panchromatic image looks after ``prepare``), brightness, contrast, gamma, per-band gain, blur,
  sensor noise and JPEG compression; and, rarely, a no-data wedge (black, as ``prepare`` leaves the
  pixels outside a GeoTIFF's footprint) where the target becomes "no building".

``mode`` picks what is applied: ``"full"`` (all of the above), ``"photometric"`` (rotation, flip
and the photometric changes: every building pixel stays a building pixel, the default),
``"geometric"`` (rotation and flip only: the augmentation of model version 2) or ``"none"``. The
default is the environment variable ``LOOKING_GLASS_AUGMENT`` or ``"photometric"``, so that a
training run or an ablation can switch it without a new hyperparameter.
"""

from __future__ import annotations

import io
import os

import numpy as np

MODES = ("full", "photometric", "geometric", "none")

# Probabilities and ranges of the photometric changes (what real imagery varies in).
P_GREY = 0.5
P_ZOOM = 0.4
MAX_ZOOM = 1.35
P_BRIGHTNESS = 0.8
P_BLUR = 0.3
P_NOISE = 0.35
P_JPEG = 0.2
P_NODATA = 0.08


def augment_mode(mode: str | None = None) -> str:
    """The augmentation mode: ``mode``, else ``$LOOKING_GLASS_AUGMENT``, else ``photometric``.

    Raises ``ValueError`` if it is not one of :data:`MODES`.
    """
    mode = mode or os.environ.get("LOOKING_GLASS_AUGMENT", "photometric")
    if mode not in MODES:
        raise ValueError(f"augmentation mode must be one of {MODES}, got {mode!r}")
    return mode


def augment_batch(images: np.ndarray, targets: np.ndarray, rng: np.random.Generator, mode: str | None = None):
    """Augment every chip of a batch; returns (images float32 0..255, targets of the input dtype).

    Rotation and flip always (unless ``mode`` is "none"); photometric changes in "photometric" and
    "full" modes; zoom and no-data wedges in "full" mode only.
    """
    mode = augment_mode(mode)
    if mode == "none":
        return images.copy(), targets.copy()
    out_images = np.empty(images.shape, np.float32)
    out_targets = targets.copy()
    binary = bool(np.isin(targets, (0, 1)).all())
    for i in range(len(images)):
        img, t = geometric(images[i], targets[i], rng, zoom=(mode == "full"), binary=binary)
        if mode in ("full", "photometric"):
            img = photometric(img.astype(np.float32), rng)
        if mode == "full":
            img, t = nodata(img, t, rng, binary)
        out_images[i], out_targets[i] = img, t
    return out_images, out_targets


def geometric(image: np.ndarray, target: np.ndarray, rng: np.random.Generator, zoom: bool = True,
              binary: bool = True):
    """Random rot90 and flip, and (``zoom``) sometimes a zoom-in crop: the same for image and target."""
    k, flip = int(rng.integers(4)), bool(rng.integers(2))
    img, t = np.rot90(image, k), np.rot90(target, k)
    if flip:
        img, t = img[:, ::-1], t[:, ::-1]
    if zoom and rng.random() < P_ZOOM:
        img, t = zoom_crop(img, t, float(rng.uniform(1.0, MAX_ZOOM)), rng, binary)
    return img, t


def zoom_crop(image: np.ndarray, target: np.ndarray, factor: float, rng: np.random.Generator, binary: bool):
    """A random (size/factor) square crop resampled back to size: bilinear for the image and for
    signed distances, nearest for binary masks."""
    from PIL import Image

    size = image.shape[0]
    crop = max(int(round(size / factor)), 8)
    y0, x0 = (int(v) for v in rng.integers(0, size - crop + 1, 2))
    img = np.ascontiguousarray(image[y0:y0 + crop, x0:x0 + crop])
    t = np.ascontiguousarray(target[y0:y0 + crop, x0:x0 + crop])
    img = np.stack([np.asarray(Image.fromarray(img[..., c].astype(np.float32), "F").resize((size, size), Image.BILINEAR))
                    for c in range(img.shape[-1])], -1)
    resample = Image.NEAREST if binary else Image.BILINEAR
    t = np.asarray(Image.fromarray(t.astype(np.float32), "F").resize((size, size), resample)).astype(target.dtype)
    return img, t


def photometric(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random radiometric changes of one float image (H, W, 3) in 0..255; returns float32 0..255."""
    from scipy import ndimage

    x = image / 255.0
    if rng.random() < P_GREY:
        w = rng.dirichlet([2.0, 3.0, 1.5]).astype(np.float32)
        x = np.repeat((x @ w)[..., None], 3, axis=-1)
    elif rng.random() < 0.4:  # per-band gain: white balance differs between sensors
        x = x * rng.uniform(0.85, 1.15, 3).astype(np.float32)
    if rng.random() < P_BRIGHTNESS:
        gamma = float(np.exp(rng.uniform(-0.45, 0.45)))
        x = np.clip(x, 0, 1) ** np.float32(gamma)
        mean = float(x.mean())
        x = (x - mean) * np.float32(rng.uniform(0.65, 1.4)) + np.float32(mean + rng.uniform(-0.15, 0.15))
    if rng.random() < P_BLUR:
        x = ndimage.gaussian_filter(x, sigma=(float(rng.uniform(0.3, 1.6)),) * 2 + (0,), truncate=2.5)
    if rng.random() < P_NOISE:
        x = x + rng.standard_normal(x.shape, dtype=np.float32) * np.float32(rng.uniform(0.005, 0.04))
    x = np.clip(x * 255.0, 0, 255)
    if rng.random() < P_JPEG:
        x = jpeg(x, int(rng.integers(30, 90)))
    return x.astype(np.float32)


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """JPEG round trip of an (H, W, 3) 0..255 image (grey images stay grey)."""
    from PIL import Image

    u8 = np.round(image).astype(np.uint8)
    grey = bool((u8[..., 0] == u8[..., 1]).all() and (u8[..., 1] == u8[..., 2]).all())
    buf = io.BytesIO()
    Image.fromarray(u8[..., 0] if grey else u8).save(buf, format="JPEG", quality=quality)
    out = np.asarray(Image.open(io.BytesIO(buf.getvalue())), np.float32)
    return np.repeat(out[..., None], 3, axis=-1) if grey else out


def nodata(image: np.ndarray, target: np.ndarray, rng: np.random.Generator, binary: bool):
    """Sometimes black out the chip beyond a random straight edge (no-data, as at a GeoTIFF's
    border); there the target says "no building" (0, or the most negative signed distance)."""
    if rng.random() >= P_NODATA:
        return image, target
    size = image.shape[0]
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:size, 0:size]
    proj = (xx - size / 2) * np.cos(angle) + (yy - size / 2) * np.sin(angle)
    dark = proj > rng.uniform(0.0, 0.45) * size
    image, target = image.copy(), target.copy()
    image[dark] = 0
    target[dark] = 0 if binary else target.min()
    return image, target
