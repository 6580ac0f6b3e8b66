"""Object-level evaluation of building outlines: the SpaceNet matching rule in a metric CRS.

Rule (SpaceNet's building-footprint metric): predicted polygons are taken in file order; each is
matched to the *still unmatched* truth polygon with which it has the highest IoU
(intersection over union of areas); if that IoU is at least ``iou`` the pair is a true positive
and the truth polygon is used up, otherwise the prediction is a false positive. Truth polygons
left unmatched are false negatives. precision = tp / (tp + fp), recall = tp / (tp + fn),
f1 = 2 tp / (2 tp + fp + fn); with nothing to divide by (no predictions, or no truth) the value
is 1.0 when there is also nothing wrong (no fn, resp. no fp) and 0.0 otherwise.

Tiles (:func:`evaluate_tiles`): predictions and truth masks of the same zoom-18 tiles are both
outlined and stitched across tile edges the way the export does it (:func:`~.stitch.outline_tiles`):
the predictions with the export's :class:`~.stitch.OutlineOptions` (instances of the model's head,
specks under ``min_area_m2`` dropped, simplified), the truth masks as their 4-connected regions
with the same ``min_area_m2`` and no simplification (so truth buildings that touch in the mask are
one truth building). Then the SpaceNet rule above, in one equal-area CRS.

Both files are reprojected from the CRS each declares (see :mod:`.layers`; the legacy GeoJSON
``crs`` member included) to one Lambert azimuthal equal-area projection centred on the data, so
areas, and hence IoU, are true ground ratios wherever the data are.
"""

from __future__ import annotations

import warnings
from dataclasses import replace

import numpy as np
import shapely

from looking_glass.outlines.errors import ExtentWarning, OutlinesError
from looking_glass.outlines.layers import read_polygons, to_crs
from looking_glass.outlines.stitch import OutlineOptions, outline_tiles

__all__ = ["OBJECT_RULE", "evaluate_polygons", "evaluate_tiles", "local_equal_area_crs", "match_spacenet", "scores"]

OBJECT_RULE = "SpaceNet: each prediction in order matched to the unmatched truth building of highest IoU"


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


def evaluate_polygons(pred_path, truth_path, iou: float = 0.5, extent_path=None) -> dict:
    """Object scores of the predicted polygons in ``pred_path`` against the truth in
    ``truth_path`` (any format and CRS :func:`~.layers.read_polygons` reads).

    ``extent_path``: a polygon file (any format and CRS; the union of its polygons) limiting the
    scoring to an area: a building of either file is scored when a point on its surface
    (``shapely.point_on_surface``) lies in it, so one cut by the edge is in or out for both.
    Without it, truth buildings that do not even meet the bounding box of the predictions are
    still misses (fn), but are counted in ``truth_outside_predictions`` and one
    :class:`~.errors.ExtentWarning` says how many (truth covering more than the predicted area is
    almost always a mistake of extent, not of the model).

    Returns a JSON-ready dict: tp, fp, fn, precision, recall, f1, iou (the threshold), predicted
    and truth (counts used), skipped (features of either file not used, with reasons: not
    polygons, no geometry, invalid; each file's also raise one InvalidGeometryWarning, its one
    line), and either ``extent`` (the file)
    with ``outside_extent`` ({"predicted", "truth"}: counts left out) or
    ``truth_outside_predictions``. Raises OutlinesError for unreadable files, a file whose
    features hold no usable polygon (``PolygonLayer.require_usable``), an extent file without
    polygons or a threshold outside (0, 1].
    """
    if not 0 < iou <= 1:
        raise OutlinesError(f"the IoU threshold must be in (0, 1], got {iou}")
    pred = read_polygons(pred_path).require_usable("nothing to score")
    truth = read_polygons(truth_path).require_usable("nothing to score against")
    pred_ll, truth_ll = pred.lonlat(), truth.lonlat()
    extra: dict = {}
    if extent_path is not None:
        area_layer = read_polygons(extent_path).require_usable("no area to score in")
        if not len(area_layer):
            raise OutlinesError(f"--extent {extent_path}: no polygon in it (give the area to score, e.g. the AOI)")
        area = shapely.union_all(area_layer.lonlat())
        shapely.prepare(area)
        keep_p = shapely.intersects(area, shapely.point_on_surface(pred_ll)) if len(pred_ll) else np.zeros(0, bool)
        keep_t = shapely.intersects(area, shapely.point_on_surface(truth_ll)) if len(truth_ll) else np.zeros(0, bool)
        extra = {"extent": str(extent_path),
                 "outside_extent": {"predicted": int((~keep_p).sum()), "truth": int((~keep_t).sum())}}
        pred_ll, truth_ll = pred_ll[keep_p], truth_ll[keep_t]
    else:
        outside = 0
        if len(pred_ll) and len(truth_ll):
            outside = int((~shapely.intersects(shapely.box(*shapely.total_bounds(pred_ll)), truth_ll)).sum())
        extra = {"truth_outside_predictions": outside}
        if outside:
            warnings.warn(f"{truth.source}: {outside:,} of {len(truth_ll):,} truth buildings lie outside the extent of "
                          f"the predictions in {pred.source} and count as misses (fn); give --extent AOI to score "
                          "only inside an area", ExtentWarning, stacklevel=2)
    metric = local_equal_area_crs(np.concatenate([pred_ll, truth_ll]))
    result = match_spacenet(to_crs(pred_ll, "EPSG:4326", metric), to_crs(truth_ll, "EPSG:4326", metric), iou)
    result.pop("matches")
    result.update({"iou": iou, "predicted": len(pred_ll), "truth": len(truth_ll),
                   "skipped": [f"{pred.source}: {s}" for s in pred.tally.skipped]
                   + [f"{truth.source}: {s}" for s in truth.tally.skipped], **extra})
    return result


def _lonlat_polygons(buildings: list) -> np.ndarray:
    arr = np.empty(len(buildings), dtype=object)
    arr[:] = [b.polygon for b in buildings]
    return arr


def evaluate_tiles(tiles, *, options=None, iou: float = 0.5) -> dict:
    """Object scores of predicted against true buildings on whole tiles (see the module docstring).

    ``tiles``: an iterable of ``((z, x, y), prediction, truth_mask)``: the model's (S, S) output for
    ``options.head`` (probability or bool mask for "binary", signed distance in metres for "sdt")
    and the (S, S) truth mask of that tile, all at one zoom, any order. A tile given twice (chips
    of two overlapping images) is scored in a separate pass, so each pass stitches each tile once.
    Returns :func:`scores` (tp, fp, fn, precision, recall, f1) plus ``iou`` (the threshold),
    ``predicted`` and ``truth`` (building counts) and ``tiles``. Raises OutlinesError for a
    threshold outside (0, 1] or tiles of mixed zooms or sizes.
    """
    if not 0 < iou <= 1:
        raise OutlinesError(f"the IoU threshold must be in (0, 1], got {iou}")
    opts = options or OutlineOptions()
    truth_opts = replace(opts, head="binary", threshold=0.5, simplify=0.0, regularise=False, min_shared=None)
    passes: list[dict] = []
    for tile, prediction, truth in tiles:
        key = tuple(int(v) for v in tile)
        free = next((p for p in passes if key not in p), None)
        if free is None:
            free = {}
            passes.append(free)
        free[key] = (prediction, np.asarray(truth, dtype=bool))
    tp = fp = fn = n_pred = n_truth = 0
    for group in passes:
        order = sorted(group, key=lambda t: (t[2], t[1]))  # row-major: y, then x
        pred = list(outline_tiles(((t, group[t][0]) for t in order), opts))
        ref = list(outline_tiles(((t, group[t][1]) for t in order), truth_opts))
        pred_ll, ref_ll = _lonlat_polygons(pred), _lonlat_polygons(ref)
        metric = local_equal_area_crs(np.concatenate([pred_ll, ref_ll]))
        m = match_spacenet(to_crs(pred_ll, "EPSG:4326", metric), to_crs(ref_ll, "EPSG:4326", metric), iou)
        tp, fp, fn = tp + m["tp"], fp + m["fp"], fn + m["fn"]
        n_pred, n_truth = n_pred + len(pred), n_truth + len(ref)
    out = scores(tp, fp, fn)
    out.update({"iou": iou, "predicted": n_pred, "truth": n_truth, "tiles": sum(len(p) for p in passes)})
    return out
