"""Reference building footprints for a job: per-tile truth areas and pixel accuracy.

``looking-glass demo --truth FOOTPRINTS.geojson`` compares the model with real footprints. The
footprints are read exactly as ``looking-glass prepare`` reads them (any CRS: the legacy GeoJSON
``crs`` member, else EPSG:4326; Polygon and MultiPolygon only, other features skipped and said in
one line; local path or ``s3://``), and the
truth of a tile is computed the way the worker computes the model's area, so the two compare:

* the footprints are reprojected to web mercator (EPSG:3857) and rasterised onto the tile's own
  256 x 256 pixel grid (``rasterio.features.rasterize``, pixel-centre rule, as prepare's
  ``--mode tiles`` labels), giving a boolean mask;
* the truth area is :func:`looking_glass.model.segmenter.building_area_m2` of that mask: the sum
  of the latitude-correct ground area of each building pixel (one area per pixel row).

Pixel accuracy compares that mask with the model's mask of the tile (as the worker stores it, read
by :mod:`looking_glass.results.masks`) and pools the counts over all tiles, with the definitions of
:mod:`looking_glass.model.metrics` (the ``evaluate`` command's).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from looking_glass.errors import EXIT_BAD_INPUT, EXIT_FAILURE, LookingGlassError
from looking_glass.grid import TILE_SIZE
from looking_glass.model.segmenter import building_area_m2


class TruthError(LookingGlassError, ValueError):
    """The footprints cannot be used as a reference (the message says which file and why)."""

    exit_code = EXIT_BAD_INPUT


@dataclass
class TruthFootprints:
    """Building footprints read with prepare's rules, ready to rasterise onto zoom-z tiles.

    ``layer`` is prepare's footprint layer (:class:`looking_glass.datasets.labels.Footprints`: shapely polygons in ``layer.crs`` with an STRtree).
    """

    source: str
    layer: object

    @property
    def count(self) -> int:
        """Number of (Multi)Polygon footprints read."""
        return len(self.layer.geoms)

    def tile_masks(self, tiles: Iterable[tuple[int, int, int]]) -> dict[tuple[int, int, int], np.ndarray]:
        """Truth masks of tiles given as (x, y, z): {(x, y, z): (256, 256) bool}, True where a
        footprint covers the pixel centre (web-mercator pixel grid of the tile, row 0 north).

        The footprints near the tiles are reprojected to EPSG:3857 once for all of them.
        Raises TruthError when the footprints' CRS cannot be related to web mercator."""
        import mercantile
        from affine import Affine
        from rasterio.crs import CRS

        from looking_glass.datasets.errors import PrepareError
        from looking_glass.datasets.labels import project_footprints, rasterize_footprints

        tiles = [(int(x), int(y), int(z)) for x, y, z in tiles]
        if not tiles:
            return {}
        bounds = [mercantile.xy_bounds(x, y, z) for x, y, z in tiles]
        pad = 1.0  # metres: footprints just outside the tiles are harmless, missing ones are not
        box = (
            min(b.left for b in bounds) - pad,
            min(b.bottom for b in bounds) - pad,
            max(b.right for b in bounds) + pad,
            max(b.top for b in bounds) + pad,
        )
        try:
            geoms, tree = project_footprints([self.layer], CRS.from_epsg(3857), box)
        except PrepareError as exc:
            raise TruthError(str(exc)) from None
        out = {}
        for (x, y, z), b in zip(tiles, bounds):
            res = (b.right - b.left) / TILE_SIZE
            transform = Affine(res, 0.0, b.left, 0.0, -(b.top - b.bottom) / TILE_SIZE, b.top)
            out[(x, y, z)] = rasterize_footprints(geoms, tree, transform, (TILE_SIZE, TILE_SIZE)).astype(bool)
        return out


def load_truth(path: str) -> TruthFootprints:
    """Footprints from a GeoJSON file (local path or ``s3://bucket/key``), read by prepare's
    footprint reader (the rule of :mod:`looking_glass.datasets.feature_tally`: what it skipped or
    repaired is ``layer.warnings``, one line). Raises TruthError with one line naming the file and
    the problem (missing, not GeoJSON, an unknown CRS, features but no usable polygon)."""
    from looking_glass.datasets.errors import PrepareError
    from looking_glass.datasets.labels import load_footprints
    from looking_glass.datasets.prepare import localize

    with tempfile.TemporaryDirectory(prefix="lg-truth-") as tmp:
        try:
            local = localize(str(path), Path(tmp))
            layer = load_footprints(local, str(path), purpose="nothing to compare the run with")
        except PrepareError as exc:
            raise TruthError(str(exc)) from None
        except OSError as exc:  # unreadable file (permissions, a folder, ...)
            raise TruthError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return TruthFootprints(str(path), layer)


def tile_truth_areas(masks: dict[tuple[int, int, int], np.ndarray]) -> dict[tuple[int, int, int], float]:
    """Truth area in m2 of each tile mask, with the model's pixel-area function."""
    return {(x, y, z): building_area_m2(m, x, y, z) for (x, y, z), m in masks.items()}


def synthetic_truth_m2(tile: tuple[int, int, int]) -> float:
    """Exact building area in m2 of synthetic-world tile (x, y, z): its rendered truth mask
    summed with the model's pixel-area function."""
    from looking_glass.datasets.synthetic import render_tile

    x, y, z = tile
    return building_area_m2(render_tile(z, x, y)[1], x, y, z)


def synthetic_truth_areas(tiles: list[tuple[int, int, int]], processes: int | None = None) -> list[float]:
    """:func:`synthetic_truth_m2` of each tile (x, y, z), in order. Rendering is CPU-bound
    (~0.1 s a tile), so more than a few dozen tiles are spread over ``processes`` worker processes
    (default: one per CPU)."""
    import multiprocessing
    import os
    from concurrent.futures import ProcessPoolExecutor

    processes = processes or os.cpu_count() or 1
    if processes < 2 or len(tiles) < 32:
        return [synthetic_truth_m2(t) for t in tiles]
    context = multiprocessing.get_context("spawn")  # never fork a process that runs servers in threads
    with ProcessPoolExecutor(min(processes, 8), mp_context=context) as pool:
        return list(pool.map(synthetic_truth_m2, tiles, chunksize=max(1, len(tiles) // (4 * processes))))


def fetch_predicted_masks(s3, bucket: str, items: list[dict], threads: int = 8) -> dict[tuple[int, int, int], np.ndarray]:
    """The model's masks of the ``done`` tile items, read with
    :func:`looking_glass.results.masks.read_tile_masks`: {(x, y, z): (256, 256) bool}. Raises
    TruthError when a done tile has no stored mask (the worker ran with LG_WRITE_MASKS=false) or
    it cannot be read."""
    from looking_glass.results.masks import MaskError, read_tile_masks

    done = [i for i in items if i["status"] == "done"]
    try:
        return {(int(i["x"]), int(i["y"]), int(i["z"])): m for i, m in read_tile_masks(s3, bucket, done, threads)}
    except MaskError as exc:
        raise TruthError(f"{exc} (masks are needed for IoU)", exit_code=EXIT_FAILURE) from None


def accuracy(predicted: dict, truth: dict) -> dict:
    """Pixel scores pooled over the tiles present in ``predicted`` (each must be in ``truth``;
    both map a tile to a bool mask): {"iou", "precision", "recall", "f1", "tp", "fp", "fn"}
    (counts in pixels).

    The definitions and the empty-mask rule are :mod:`looking_glass.model.metrics`'
    (``confusion_counts`` + ``scores_from_counts``; a unit test holds the two equal). They are
    restated here because that module imports Keras, which the demo process never loads."""
    tp = fp = fn = 0
    for tile, pred in predicted.items():
        ref = truth[tile]
        both = int(np.count_nonzero(pred & ref))
        tp += both
        fp += int(np.count_nonzero(pred)) - both
        fn += int(np.count_nonzero(ref)) - both
    perfect = fp == 0 and fn == 0

    def ratio(num: float, den: float) -> float:
        return num / den if den > 0 else (1.0 if perfect else 0.0)

    return {
        "iou": ratio(tp, tp + fp + fn),
        "f1": ratio(2 * tp, 2 * tp + fp + fn),
        "precision": ratio(tp, tp + fp),
        "recall": ratio(tp, tp + fn),
        "tp": tp,
        "fp": fp,
        "fn": fn,
    }
