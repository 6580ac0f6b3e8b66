"""Object-level evaluation of building outlines: the SpaceNet matching rule in a metric CRS.

Rule (SpaceNet's building-footprint metric): predicted polygons are taken in file order; each is
matched to the *still unmatched* truth polygon with which it has the highest IoU
(intersection over union of areas); if that IoU is at least ``iou`` the pair is a true positive
and the truth polygon is used up, otherwise the prediction is a false positive. Truth polygons
left unmatched are false negatives. precision = tp / (tp + fp), recall = tp / (tp + fn),
f1 = 2 tp / (2 tp + fp + fn); with nothing to divide by (no predictions, or no truth) the value
is 1.0 when there is also nothing wrong (no fn, resp. no fp) and 0.0 otherwise.

Both files are reprojected from the CRS each declares (see :mod:`.layers`; the legacy GeoJSON
``crs`` member included) to one Lambert azimuthal equal-area projection centred on the data, so
areas, and hence IoU, are true ground ratios wherever the data are.
"""

from __future__ import annotations

import numpy as np
import shapely

from looking_glass.outlines.errors import OutlinesError
from looking_glass.outlines.layers import read_polygons, to_crs

__all__ = ["evaluate_polygons", "local_equal_area_crs", "match_spacenet", "scores"]


def scores(tp: int, fp: int, fn: int) -> dict:
    """tp, fp, fn, precision, recall and f1 (rules for empty denominators in the module docstring)."""
    precision = tp / (tp + fp) if tp + fp else (1.0 if fn == 0 else 0.0)
    recall = tp / (tp + fn) if tp + fn else (1.0 if fp == 0 else 0.0)
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0
    return {"tp": tp, "fp": fp, "fn": fn, "precision": precision, "recall": recall, "f1": f1}


def match_spacenet(pred, truth, iou: float = 0.5) -> dict:
    """The SpaceNet matching of ``pred`` (sequence of polygons, in order) against ``truth``, both
    in one metric CRS. Returns :func:`scores` plus ``matches``: a list of (pred index, truth index,
    IoU) for the true positives."""
    if not 0 < iou <= 1:
        raise OutlinesError(f"the IoU threshold must be in (0, 1], got {iou}")
    pred = np.asarray(pred, dtype=object).reshape(-1)
    truth = np.asarray(truth, dtype=object).reshape(-1)
    tree = shapely.STRtree(truth)
    truth_area = shapely.area(truth)
    used = np.zeros(len(truth), bool)
    matches, fp = [], 0
    for i, p in enumerate(pred):
        cand = tree.query(p, predicate="intersects")
        cand = cand[~used[cand]]
        best_j, best = -1, 0.0
        if len(cand):
            inter = shapely.area(shapely.intersection(p, truth[cand]))
            union = shapely.area(p) + truth_area[cand] - inter
            ious = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
            k = int(np.argmax(ious))
            best_j, best = int(cand[k]), float(ious[k])
        if best_j >= 0 and best >= iou:
            used[best_j] = True
            matches.append((i, best_j, best))
        else:
            fp += 1
    out = scores(len(matches), fp, int((~used).sum()))
    out["matches"] = matches
    return out


def local_equal_area_crs(lonlat_geoms):
    """A Lambert azimuthal equal-area pyproj CRS centred on the bounds of lon/lat geometries."""
    from pyproj import CRS

    geoms = np.asarray(lonlat_geoms, dtype=object)
    if len(geoms) == 0:
        lon0, lat0 = 0.0, 0.0
    else:
        w, s, e, n = shapely.total_bounds(geoms)
        lon0, lat0 = (w + e) / 2, (s + n) / 2
    return CRS.from_proj4(f"+proj=laea +lat_0={lat0:.6f} +lon_0={lon0:.6f} +x_0=0 +y_0=0 +datum=WGS84 +units=m +no_defs")


def evaluate_polygons(pred_path, truth_path, iou: float = 0.5) -> dict:
    """Object scores of the predicted polygons in ``pred_path`` against the truth in
    ``truth_path`` (any format and CRS :func:`~.layers.read_polygons` reads).

    Returns a JSON-ready dict: tp, fp, fn, precision, recall, f1, iou (the threshold), predicted
    and truth (counts used), skipped (features of either file not used, with reasons; each file's
    skipped features also raise one InvalidGeometryWarning). Raises OutlinesError for unreadable
    files or a threshold outside (0, 1].
    """
    if not 0 < iou <= 1:
        raise OutlinesError(f"the IoU threshold must be in (0, 1], got {iou}")
    pred = read_polygons(pred_path)
    truth = read_polygons(truth_path)
    pred_ll, truth_ll = pred.lonlat(), truth.lonlat()
    metric = local_equal_area_crs(np.concatenate([pred_ll, truth_ll]))
    result = match_spacenet(to_crs(pred_ll, "EPSG:4326", metric), to_crs(truth_ll, "EPSG:4326", metric), iou)
    result.pop("matches")
    result.update({"iou": iou, "predicted": len(pred), "truth": len(truth),
                   "skipped": [f"{pred.source}: {s}" for s in pred.skipped]
                   + [f"{truth.source}: {s}" for s in truth.skipped]})
    return result
