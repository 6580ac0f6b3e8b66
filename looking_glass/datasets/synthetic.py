"""Synthetic worlds: deterministic aerial-looking tiles with their exact building masks.

Any z/x/y renders the same way every time, so the demo and the tests know the true building area
of every tile. There are two worlds:

- the demo world (``render_tile``, ``synthetic_classic``): plain RGB tiles with coloured roofs,
  trees and roads. The local tile server, ``looking-glass demo``, ``evaluate --synthetic`` and the
  tests use it; a model must stay good at it (``evaluate --synthetic 200`` IoU >= 0.85);
- the randomised world (``render_randomised_tile``, ``synthetic_randomised``): domain
  randomisation for training models that transfer to real imagery: RGB and panchromatic sensors,
  varied ground sample distance, one sun per scene with consistent shadows, forests and yard
  trees overhanging roofs, roofs of many materials (dark ones included) with gable/hip shading,
  driveways, cars, pools, fences, parking lots, haze, blur, noise, 16-bit-like radiometry through
  a percentile stretch and JPEG artefacts.

``looking-glass synth-data`` mixes the two (``looking_glass.datasets.synthdata``).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from looking_glass.datasets.synthetic_classic import render_tile
from looking_glass.datasets.synthetic_noise import value_noise
from looking_glass.datasets.synthetic_randomised import render_tile as render_randomised_tile

WORLDS = {"demo": render_tile, "randomised": render_randomised_tile}

__all__ = ["WORLDS", "png_bytes", "render_randomised_tile", "render_tile", "render_world_tile", "value_noise"]


def render_world_tile(world: str, z: int, x: int, y: int) -> tuple[np.ndarray, np.ndarray]:
    """Tile z/x/y of ``world`` ("demo" or "randomised"): (image uint8 (256, 256, 3), truth bool)."""
    if world not in WORLDS:
        raise ValueError(f"world must be one of {sorted(WORLDS)}, got {world!r}")
    return WORLDS[world](z, x, y)


def png_bytes(image: np.ndarray) -> bytes:
    """``image`` (H, W, 3) or (H, W) uint8 encoded as PNG."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()
