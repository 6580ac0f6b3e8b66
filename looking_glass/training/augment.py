"""Training augmentation: random changes of a chip that keep its building mask true.

Images are float arrays (N, H, W, C) in 0..255, targets (N, H, W) in the head's units; the same
geometric change is applied to both.
"""

from __future__ import annotations

import numpy as np


def augment_batch(images: np.ndarray, targets: np.ndarray, rng: np.random.Generator):
    """Random 90-degree rotation and horizontal flip per chip, the same for image and target."""
    images, targets = images.copy(), targets.copy()
    for i in range(len(images)):
        k, flip = int(rng.integers(4)), bool(rng.integers(2))
        img, t = np.rot90(images[i], k), np.rot90(targets[i], k)
        if flip:
            img, t = img[:, ::-1], t[:, ::-1]
        images[i], targets[i] = img, t
    return images, targets
