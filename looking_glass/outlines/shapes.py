"""Editor-ready shapes: simplification and regularisation of one polygon in world pixels.

Both work in pixel space, where web mercator's conformality keeps angles true to the ground.

- :func:`simplify`: Douglas-Peucker with topology preserved (``shapely.simplify``), tolerance in
  pixels; it removes the staircase that tracing along pixel edges leaves on slanted walls.
- :func:`regularise`: right angles on the polygon's dominant orientation. The orientation is the
  length-weighted mean edge direction modulo 90 degrees (edges of a rectilinear building all vote
  for the same angle; squared lengths, so long walls outvote the staircase left by tracing) or the
  orientation of its minimum rotated rectangle, whichever squares up better. Each ring is rotated upright, every edge classed horizontal or vertical,
  consecutive edges of one class merged into one wall at their length-weighted mean position, and
  the walls intersected again. The result is kept only if it is a valid polygon whose IoU with the
  input is at least ``min_iou``; otherwise a nearly rectangular polygon (area >= 85% of its
  minimum rotated rectangle) becomes that rectangle, and anything else is returned unchanged.
"""

from __future__ import annotations

import math

import numpy as np
import shapely

__all__ = ["dominant_angle", "regularise", "simplify", "simplify_all"]


def simplify(poly, tolerance_px: float):
    """``poly`` simplified with ``tolerance_px`` (pixels), topology preserved; unchanged when the
    tolerance is 0 or less, or when simplifying would empty it."""
    if tolerance_px <= 0:
        return poly
    out = shapely.simplify(poly, tolerance_px, preserve_topology=True)
    return poly if out.is_empty or not out.is_valid else out


def simplify_all(polys: np.ndarray, tolerance_px) -> np.ndarray:
    """:func:`simplify` of every polygon of an array (``tolerance_px`` one number or one per
    polygon), vectorised; a polygon that would come out empty or invalid is kept as it was."""
    polys = np.asarray(polys, dtype=object)
    tol = np.broadcast_to(np.asarray(tolerance_px, dtype=float), polys.shape)
    # Plain Douglas-Peucker first (several times faster on large outlines); the topology-preserving
    # variant only for the few shapes it would leave invalid.
    out = shapely.simplify(polys, np.maximum(tol, 0.0), preserve_topology=False)
    redo = (tol > 0) & (shapely.is_empty(out) | ~shapely.is_valid(out))
    if redo.any():
        out[redo] = shapely.simplify(polys[redo], tol[redo], preserve_topology=True)
    bad = (tol <= 0) | shapely.is_empty(out) | ~shapely.is_valid(out)
    out[bad] = polys[bad]
    return out


def _edges(ring: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    d = np.diff(ring, axis=0)
    return d, np.hypot(d[:, 0], d[:, 1])


def dominant_angle(poly) -> float:
    """The polygon's dominant orientation in radians, in [0, pi/2): the circular mean of its edge
    directions modulo 90 degrees weighted by squared edge length (exterior and holes)."""
    rings = [np.asarray(poly.exterior.coords)] + [np.asarray(r.coords) for r in poly.interiors]
    d = np.concatenate([_edges(r)[0] for r in rings])
    length = d[:, 0] ** 2 + d[:, 1] ** 2
    theta = np.arctan2(d[:, 1], d[:, 0])
    c, s = (length * np.cos(4 * theta)).sum(), (length * np.sin(4 * theta)).sum()
    if c == 0 and s == 0:
        return 0.0
    return float(math.atan2(s, c) / 4) % (math.pi / 2)


def _rotate(xy: np.ndarray, angle: float, about: np.ndarray) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    p = xy - about
    return np.column_stack([p[:, 0] * c - p[:, 1] * s, p[:, 0] * s + p[:, 1] * c]) + about


def _orthogonal_ring(ring: np.ndarray) -> np.ndarray | None:
    """An upright ring (closed, (N, 2)) made rectilinear, or None when it cannot be."""
    d, length = _edges(ring)
    keep = length > 1e-9
    d, length, starts = d[keep], length[keep], ring[:-1][keep]
    if len(d) < 4:
        return None
    horizontal = np.abs(d[:, 0]) >= np.abs(d[:, 1])
    mids = starts + d / 2
    # Rotate the cycle so it starts at a change of class, then group runs of one class.
    change = np.flatnonzero(horizontal != np.roll(horizontal, 1))
    if len(change) < 4:
        return None
    order = np.roll(np.arange(len(d)), -int(change[0]))
    walls = []  # (horizontal?, position)
    run_h, run_pos, run_len = None, 0.0, 0.0
    for i in order:
        h = bool(horizontal[i])
        pos = mids[i, 1] if h else mids[i, 0]
        if run_h is None or h != run_h:
            if run_h is not None:
                walls.append((run_h, run_pos / run_len))
            run_h, run_pos, run_len = h, 0.0, 0.0
        run_pos += pos * length[i]
        run_len += length[i]
    walls.append((run_h, run_pos / run_len))
    if len(walls) < 4 or len(walls) % 2:
        return None
    pts = []
    for k, (h, pos) in enumerate(walls):
        _, npos = walls[(k + 1) % len(walls)]
        pts.append((npos, pos) if h else (pos, npos))  # corner where wall k meets wall k+1
    pts.append(pts[0])
    return np.asarray(pts, dtype=float)


def _iou(a, b) -> float:
    inter = shapely.area(shapely.intersection(a, b))
    union = a.area + b.area - inter
    return float(inter / union) if union > 0 else 0.0


def _envelope_angle(poly) -> float | None:
    box = shapely.oriented_envelope(poly)
    if box.geom_type != "Polygon":
        return None
    (x0, y0), (x1, y1) = np.asarray(box.exterior.coords)[:2]
    return math.atan2(y1 - y0, x1 - x0) % (math.pi / 2)


def _squared(poly, angle: float):
    """``poly`` made rectilinear on ``angle``, or None when its outline cannot be."""
    about = np.asarray(poly.centroid.coords[0])
    rings = []
    for k, ring in enumerate([poly.exterior, *poly.interiors]):
        upright = _rotate(np.asarray(ring.coords), -angle, about)
        ortho = _orthogonal_ring(upright)
        if ortho is None:
            if k == 0:
                return None
            ortho = upright  # keep a hole that cannot be squared as it is
        rings.append(_rotate(ortho, angle, about))
    out = shapely.Polygon(rings[0], rings[1:])
    return out if out.is_valid and not out.is_empty else None


def regularise(poly, min_iou: float = 0.8):
    """``poly`` (a Polygon in pixel space) with right angles on its dominant orientation (see the
    module docstring); never worse than ``min_iou`` against the input, else the fallbacks."""
    if poly.is_empty or poly.geom_type != "Polygon":
        return poly
    best, best_iou = None, min_iou
    angles = [dominant_angle(poly)]
    other = _envelope_angle(poly)
    if other is not None:
        gap = abs(other - angles[0]) % (math.pi / 2)
        if min(gap, math.pi / 2 - gap) > math.radians(0.5):  # the same orientation is tried once
            angles.append(other)
    for angle in angles:
        out = _squared(poly, angle)
        if out is not None and (score := _iou(out, poly)) >= best_iou:
            best, best_iou = out, score
    if best is not None:
        return best
    box = shapely.oriented_envelope(poly)
    if box.geom_type == "Polygon" and box.area > 0 and poly.area >= 0.85 * box.area:
        return box
    return poly
