"""Light and sensor of the synthetic world: from height field and albedo to an 8-bit image.

``illuminate``: one sun per scene. Lambertian shading of the height field's slopes (gable and hip
roof faces, crown sides, walls) and cast shadows found by marching the height field towards the
sun; shadowed ground keeps only the (bluish) sky light.

``expose``: the sensor. Haze (airlight), optics blur, a panchromatic band (a weighted sum of R, G,
B and NIR, shown as grey) or RGB, 16-bit-like digital numbers with shot and read noise, the
per-band 2-98-style percentile stretch that ``prepare`` applies to real imagery, and optional JPEG
compression artefacts.
"""

from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image
from scipy import ndimage

from looking_glass.datasets.synthetic_scene import Scene

SKY_TINT = np.array([0.93, 0.98, 1.07, 0.9], np.float32)  # shade is lit by the bluish sky
AIRLIGHT = np.array([0.58, 0.6, 0.64, 0.45], np.float32)


def sun_vector(scene: Scene) -> tuple[float, float, float]:
    """Unit vector towards the sun: (x right, y down, up)."""
    ce = math.cos(scene.sun_elevation)
    return (ce * math.cos(scene.sun_azimuth), ce * math.sin(scene.sun_azimuth), math.sin(scene.sun_elevation))


def cast_shadows(height: np.ndarray, scene: Scene, m_per_px: float, max_px: int,
                 base: np.ndarray | None = None) -> np.ndarray:
    """Shadow mask in 0..1: a pixel is shadowed when something between its top ``height`` and its
    ``base`` (tree crowns float on trunks; 0 for buildings) crosses the ray towards the sun.

    Marched at half resolution in steps of 2 px towards the sun for up to ``max_px`` px.
    """
    n = height.shape[0] // 2 * 2
    h2 = height[:n, :n].reshape(n // 2, 2, n // 2, 2).max(axis=(1, 3))
    b2 = (np.zeros_like(h2) if base is None else base[:n, :n].reshape(n // 2, 2, n // 2, 2).min(axis=(1, 3)))
    sx, sy, sz = sun_vector(scene)
    horizontal = math.hypot(sx, sy)
    ux, uy = sx / horizontal, sy / horizontal
    rise = sz / horizontal * 2 * m_per_px  # metres the ray climbs per half-res pixel
    top = float(h2.max())
    shadow = np.zeros_like(h2, bool)
    size = h2.shape[0]
    for k in range(1, max_px // 2 + 1):
        if k * rise > top:
            break
        ox, oy = int(round(k * ux)), int(round(k * uy))
        if abs(ox) >= size or abs(oy) >= size:
            break
        # blocker at p + (ox, oy)
        ys, yd = (slice(oy, size), slice(0, size - oy)) if oy >= 0 else (slice(0, size + oy), slice(-oy, size))
        xs, xd = (slice(ox, size), slice(0, size - ox)) if ox >= 0 else (slice(0, size + ox), slice(-ox, size))
        ray = h2[yd, xd] + k * rise
        shadow[yd, xd] |= (h2[ys, xs] > ray) & (b2[ys, xs] < ray)
    full = np.repeat(np.repeat(shadow, 2, axis=0), 2, axis=1).astype(np.float32)
    out = np.zeros(height.shape, np.float32)
    out[:n, :n] = ndimage.uniform_filter(full, 3)
    return out


def illuminate(height: np.ndarray, albedo: np.ndarray, scene: Scene, m_per_px: float, max_shadow_px: int,
               base: np.ndarray | None = None):
    """Radiance (H, W, 4) float32 of the scene under its sun (flat sunlit ground = its albedo)."""
    gy, gx = np.gradient(height, m_per_px)
    sx, sy, sz = sun_vector(scene)
    norm = np.sqrt(gx * gx + gy * gy + 1)
    direct = np.maximum(-gx * sx - gy * sy + sz, 0) / norm / sz
    direct = np.minimum(direct, 2.5)
    shadow = cast_shadows(height, scene, m_per_px, max_shadow_px, base)
    sun = (1 - scene.ambient) * direct * (1 - shadow)
    light = scene.ambient * SKY_TINT[None, None, :] + sun[..., None]
    return (albedo * light).astype(np.float32)


def expose(radiance: np.ndarray, scene: Scene, rng: np.random.Generator) -> np.ndarray:
    """The 8-bit (S, S, 3) image the scene's sensor makes of ``radiance`` (S, S, 4)."""
    rad = radiance * (1 - scene.haze) + AIRLIGHT * scene.haze
    if scene.pan:
        bands = (rad @ np.asarray(scene.pan_weights, np.float32))[..., None]
    else:
        bands = rad[..., :3]
    bands = ndimage.gaussian_filter(bands, sigma=(scene.blur, scene.blur, 0), truncate=2.5)
    dn = bands * scene.gain + 60.0
    noise_sd = np.sqrt(np.maximum(dn, 0) * 0.5 + (4.0 * scene.noise) ** 2) * scene.noise
    dn = np.round(dn + rng.standard_normal(dn.shape, dtype=np.float32) * noise_sd)
    lo_p, hi_p = scene.stretch
    lo, hi = np.percentile(dn[::2, ::2].reshape(-1, dn.shape[-1]), [lo_p, hi_p], axis=0)
    out = np.clip((dn - lo) / np.maximum(hi - lo, 1.0) * 255.0, 0, 255)
    out = np.round(out).astype(np.uint8)
    if scene.jpeg:
        buf = io.BytesIO()
        Image.fromarray(out[..., 0] if scene.pan else out).save(buf, format="JPEG", quality=scene.jpeg)
        out = np.asarray(Image.open(io.BytesIO(buf.getvalue())))
        if scene.pan:
            out = out[..., None]
    if out.shape[-1] == 1:
        out = np.repeat(out, 3, axis=-1)
    return np.ascontiguousarray(out)
