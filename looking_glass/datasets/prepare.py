"""Training data preparation: GeoTIFFs + GeoJSON building footprints -> sharded training chips.

``looking-glass prepare`` turns georeferenced imagery and building footprints into the chips the
DeepLab V3+ model trains on, in the chip format of :mod:`looking_glass.datasets.chips`. This
module is the orchestration; the pieces it uses each have one module:

* where the inputs come from and how images pair with labels: :mod:`looking_glass.datasets.inputs`;
* cutting one image into chips: :mod:`looking_glass.datasets.cut`;

* reading the imagery (bands, nodata, the percentile stretch): :mod:`looking_glass.imagery.raster`;
* reading and rasterizing the footprints, the signed distance: :mod:`looking_glass.datasets.labels`;
* the train/validation split: :mod:`looking_glass.datasets.split`;
* writing chips and the manifest atomically: :mod:`looking_glass.datasets.chips`.

Rules
-----
* **Modes.** ``native``: chips of ``chip_size`` px on the image's own pixel grid, starting at the
  top-left corner; chips at the right/bottom edge that extend past the image are padded with
  nodata (and so count towards the nodata fraction). ``tiles``: chips are the 256 px web-mercator
  zoom-18 tiles (:mod:`looking_glass.grid`) that the image overlaps, reprojected with
  ``rasterio.warp.reproject`` (bilinear), so training sees exactly what inference sees.
* **Bands, radiometry, nodata:** as :mod:`looking_glass.imagery.raster` says. A chip whose nodata
  fraction exceeds ``max_nodata_fraction`` is dropped and counted; a chip with no valid pixel at
  all is always dropped (so ``max_nodata_fraction=1.0`` keeps every chip with any data).
* **Ground resolution** of a chip: native: the GeoTIFF's pixel size, converted to metres
  (:func:`looking_glass.imagery.raster.pixel_size_m`); tiles:
  :func:`looking_glass.grid.ground_resolution_m` at the tile's latitude.
* **Labels:** an empty label file (no features) is "no buildings here": the images give chips
  with all-zero masks, and the manifest's footprint entry says ``"empty": true`` (with a
  warning). Invalid polygons are repaired or skipped, each named in the manifest's warnings.
* **Orientation:** south-up GeoTIFFs are read as the north-up images they are
  (:class:`looking_glass.imagery.raster.RasterImage`), so both modes give the same chips, bounds
  and masks as for the same image stored north-up; rotated or GCP-referenced files are refused.
* **Inputs** may be local paths, globs, ``s3://bucket/key`` objects and ``s3://`` prefixes, and
  images pair with label files by id (:mod:`looking_glass.datasets.inputs`). Images are read in
  place (S3 through GDAL's ``/vsis3/``), window by window, with GDAL's block cache capped: memory
  stays bounded whatever the image's size. Everything is validated before anything is written
  (a header read per image, several at a time: bands, CRS; a mix of band counts, or of CRSs in
  native mode, is refused). Of several images, one that cannot be read is skipped and named in
  the manifest's warnings; a single image, or none readable, is an error.
* **Parallel** (``jobs``): each image is cut in a worker process into a part dataset; the parts
  are joined in input order, so the output (chip ids, shards, manifest) does not depend on
  ``jobs`` or on which image finishes first. An image that fails while being cut is skipped and
  named in the manifest's warnings; if every image fails, nothing is written.
* **Overlap** (``stride``, native mode): chips every ``stride`` px (:mod:`looking_glass.datasets.cut`).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

from looking_glass.datasets.chips import (
    DEFAULT_SHARD_SIZE,
    Chip,
    DatasetWriter,
    check_out_dir,
    load_split,
    write_dataset,
)
from looking_glass.datasets.cut import chip_steps, cut_native, cut_tiles, image_tiles
from looking_glass.datasets.errors import PrepareError
from looking_glass.datasets.inputs import expand_inputs, file_id, image_env, localize, pair_inputs, raster_path
from looking_glass.datasets.labels import load_footprints, signed_distance_m
from looking_glass.datasets.split import TILES_SPLIT_SOURCE, fit_split_block, split_rule, split_summary
from looking_glass.errors import LookingGlassError
from looking_glass.grid import TILE_SIZE, ZOOM
from looking_glass.imagery.raster import (
    DEFAULT_STRETCH_PERCENTILES,
    RasterError,
    RasterImage,
    alpha_bands,
    check_bands,
    check_stretch_percentiles,
    open_geotiff,
    select_bands,
)

__all__ = [
    "MIN_CHIP_SIZE",
    "MODES",
    "Chip",
    "PrepareConfig",
    "PrepareError",
    "load_split",
    "localize",
    "prepare",
    "signed_distance_m",
    "write_dataset",
]
# Chip, PrepareError, load_split, localize, signed_distance_m and write_dataset are defined in
# chips, errors, inputs and labels; they are re-exported here for callers that still import them from prepare.

MODES = ("native", "tiles")
MIN_CHIP_SIZE = 32


@dataclass(frozen=True)
class PrepareConfig:
    """What ``prepare`` does: the chip mode and size, bands, label and split parameters and the
    shard layout (every field is recorded in the manifest's ``parameters``)."""

    chip_size: int = TILE_SIZE
    mode: str = "native"  # "native" | "tiles"
    stride: int | None = None  # native mode: px between chip origins; None = chip_size
    bands: tuple[int, ...] | None = None  # 1-based; 1 index (grey) or 3 (R, G, B)
    sdt_clip_m: float = 10.0
    max_nodata_fraction: float = 0.2
    val_fraction: float = 0.2
    split_block: int = 4
    stretch_percentiles: tuple[float, float] = DEFAULT_STRETCH_PERCENTILES
    shard_size: int = DEFAULT_SHARD_SIZE
    seed: int = 0
    compress: bool = True

    def validate(self) -> None:
        """Raise :class:`PrepareError` naming the first field that is out of range."""
        if self.mode not in MODES:
            raise PrepareError(f"mode must be one of {MODES}, got {self.mode!r}")
        if not isinstance(self.chip_size, int) or self.chip_size < MIN_CHIP_SIZE:
            raise PrepareError(f"chip_size must be an integer >= {MIN_CHIP_SIZE}, got {self.chip_size!r}")
        if self.mode == "tiles" and self.chip_size != TILE_SIZE:
            raise PrepareError(
                f"tiles mode chips are the {TILE_SIZE} px zoom-{ZOOM} tiles: chip_size must be "
                f"{TILE_SIZE}, got {self.chip_size}"
            )
        if self.stride is not None:
            if not isinstance(self.stride, int) or isinstance(self.stride, bool) or not 0 < self.stride <= self.chip_size:
                raise PrepareError(
                    f"stride must be an integer from 1 to the chip size ({self.chip_size}) px, got {self.stride!r}"
                )
            if self.mode == "tiles" and self.stride != self.chip_size:
                raise PrepareError("stride applies to native mode only: tiles mode chips are the zoom-18 tiles")
        try:
            check_bands(self.bands)
        except RasterError as e:
            raise PrepareError(str(e)) from None
        if not (isinstance(self.sdt_clip_m, (int, float)) and math.isfinite(self.sdt_clip_m) and self.sdt_clip_m > 0):
            raise PrepareError(f"sdt_clip_m must be a positive number of metres, got {self.sdt_clip_m!r}")
        for name in ("max_nodata_fraction", "val_fraction"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0.0 <= value <= 1.0):
                raise PrepareError(f"{name} must be a fraction between 0 and 1, got {value!r}")
        if not isinstance(self.split_block, int) or self.split_block < 1:
            raise PrepareError(f"split_block must be an integer >= 1, got {self.split_block!r}")
        try:
            check_stretch_percentiles(self.stretch_percentiles)
        except RasterError as e:
            raise PrepareError(str(e)) from None
        if not isinstance(self.shard_size, int) or self.shard_size < 1:
            raise PrepareError(f"shard_size must be an integer >= 1, got {self.shard_size!r}")
        if not isinstance(self.seed, int):
            raise PrepareError(f"seed must be an integer, got {self.seed!r}")

    def parameters(self) -> dict:
        """Every field, plus the zoom and resampling, as the manifest's ``parameters`` record them."""
        params = asdict(self)
        params["bands"] = list(self.bands) if self.bands is not None else None
        params["stretch_percentiles"] = list(self.stretch_percentiles)
        params["zoom"] = ZOOM
        params["resampling"] = "bilinear" if self.mode == "tiles" else None
        return params

    def split_words(self, asked_block: int | None = None) -> dict:
        """The manifest's ``split_rule`` (the rule applied, in words) and ``split_summary`` (a few
        words, what prepare's last line says) for this configuration's ``split_block``;
        ``asked_block``: the block size asked for, when the fallback to per chip replaced it."""
        return {"split_rule": split_rule(self.split_block, self.val_fraction, self.seed, asked_block),
                "split_summary": split_summary(self.split_block, asked_block)}



def _read_header(path: str, cfg: PrepareConfig) -> tuple[int, int, str, list]:
    """Open one image's header (no pixels read): (candidate chips, band count, CRS, the chips'
    split cells: ``(source, row, col)`` as the cutters pass them to ``block_split``); raises
    PrepareError for an unreadable image or bands that do not fit."""
    with image_env(path):
        try:
            src = open_geotiff(raster_path(path), path)
        except RasterError as e:
            raise PrepareError(str(e)) from e.__cause__
        try:
            select_bands(src.count, cfg.bands, path, alpha_bands(src))
            if cfg.mode == "native":
                step, size, name = cfg.stride or cfg.chip_size, cfg.chip_size, Path(path).name
                rows, cols = chip_steps(src.height, size, step), chip_steps(src.width, size, step)
                cells = [(name, r * step // size, c * step // size) for r in range(rows) for c in range(cols)]
                count = rows * cols
            else:
                cells = [(TILES_SPLIT_SOURCE, t.y, t.x) for t in image_tiles(src)[0]]
                count = len(cells)
            return count, src.count, src.crs.to_string(), cells
        except RasterError as e:
            raise PrepareError(str(e)) from None
        finally:
            src.close()


def _check_images(paths: Sequence[str], cfg: PrepareConfig, threads: int) -> tuple[dict[str, int], list[str], list]:
    """Read every image's header (``threads`` at a time): the candidate chips of each readable
    image, why the others are skipped, and the split cells of all candidate chips. One image that cannot be read, or none readable of
    several, is a PrepareError; so is a mix the dataset cannot hold (band counts; CRSs in native
    mode)."""
    from concurrent.futures import ThreadPoolExecutor

    def check(path: str):
        try:
            return _read_header(path, cfg)
        except PrepareError as e:
            return e

    with ThreadPoolExecutor(max(1, min(threads, len(paths)))) as pool:
        headers = dict(zip(paths, pool.map(check, paths)))
    bad = [str(h) for h in headers.values() if isinstance(h, PrepareError)]
    good = {p: h for p, h in headers.items() if not isinstance(h, PrepareError)}
    if bad and (len(paths) == 1 or not good):
        first = next(h for h in headers.values() if isinstance(h, PrepareError))
        if len(paths) == 1:
            raise first
        raise PrepareError(f"none of the {len(paths)} images can be read; the first: {first}")
    for what, index, why in (("band counts", 1, "one dataset holds one kind of imagery: prepare each kind separately"),
                             ("CRSs", 2, "native chips keep each image's own grid: use --mode tiles, which puts every image on the zoom-18 grid")):
        seen: dict = {}
        for p, h in good.items():
            seen.setdefault(h[index], p)
        if len(seen) > 1 and (index == 1 or cfg.mode == "native"):
            listed = "; ".join(f"{v} ({p})" for v, p in seen.items())
            raise PrepareError(f"the images mix {what}: {listed}; {why}")
    return {p: h[0] for p, h in good.items()}, bad, [cell for h in good.values() for cell in h[3]]


@dataclass(frozen=True)
class _Task:
    """One image to cut (in a worker process with jobs > 1): its chips go to ``part``."""

    index: int
    image: str
    prefix: str
    labels: tuple[tuple[str, str], ...]  # (local path, label) of its footprint files
    config: PrepareConfig
    part: str


_PROGRESS = None  # the worker process's progress queue (set by _init_worker)
_LAYERS: dict = {}  # footprint files already read in this process (one OSM extract, many images)


def _init_worker(queue) -> None:
    global _PROGRESS
    _PROGRESS = queue


def _cut_image(task: _Task, tick=None) -> dict:
    """Cut one image into the dataset ``task.part``; returns its summary, or an ``error``."""
    cfg = task.config
    tick = tick or (_PROGRESS.put if _PROGRESS is not None else (lambda n: None))
    try:
        layers = []
        for local, label in task.labels:
            if (local, label) not in _LAYERS:
                _LAYERS[(local, label)] = load_footprints(Path(local), label)
            layers.append(_LAYERS[(local, label)])
        with image_env(task.image):
            src = open_geotiff(raster_path(task.image), task.image)
            try:
                img = RasterImage(src, task.image, select_bands(src.count, cfg.bands, task.image, alpha_bands(src)), cfg.stretch_percentiles)
                with DatasetWriter(task.part, chip_size=cfg.chip_size, shard_size=cfg.shard_size, compress=cfg.compress) as writer:
                    cut = cut_native if cfg.mode == "native" else cut_tiles
                    candidates = cut(img, task.prefix, layers, cfg, writer, tick)
                    manifest = writer.commit(sources={"image": _image_summary(img, candidates, len(writer.chips))})
            finally:
                src.close()
        summary = manifest["sources"]["image"]
        summary["labels"] = [label for _, label in task.labels]
        if manifest["chips"] and not any(c["building_pixels"] for c in manifest["chips"]) and any(not fp.empty for fp in layers):
            summary["warning"] = (
                f"{task.image}: no building of {', '.join(summary['labels'])} falls on its chips "
                "(labels of another place, or in another CRS than the file declares?)"
            )
        return {"index": task.index, "summary": summary, "part": task.part}
    except (LookingGlassError, ValueError, OSError) as e:  # one bad image is skipped, not the run
        return {"index": task.index, "error": f"{task.image}: {e}", "part": None}


def _run_tasks(tasks: list[_Task], jobs: int, tick) -> list[dict]:
    """Run the tasks (in ``jobs`` spawned processes when > 1); results in task order."""
    if jobs <= 1 or len(tasks) <= 1:
        return [_cut_image(t, tick) for t in tasks]
    import multiprocessing
    import queue as queue_mod
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    ctx = multiprocessing.get_context("spawn")  # no fork of a process holding GDAL/boto3 threads
    progress = ctx.Queue()
    results: dict[int, dict] = {}
    with ProcessPoolExecutor(min(jobs, len(tasks)), mp_context=ctx, initializer=_init_worker, initargs=(progress,)) as pool:
        pending = {pool.submit(_cut_image, t) for t in tasks}
        while pending:
            done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
            for fut in done:
                r = fut.result()
                results[r["index"]] = r
            _drain(progress, tick, queue_mod.Empty)
    _drain(progress, tick, queue_mod.Empty)  # the workers have exited: what they sent last is here
    return [results[t.index] for t in tasks]


def _drain(progress, tick, empty) -> None:
    with contextlib.suppress(empty):
        while True:
            tick(progress.get(timeout=0.05))


def prepare(
    images: Sequence[str],
    footprints: Sequence[str],
    out_dir: str | os.PathLike,
    config: PrepareConfig | None = None,
    *,
    overwrite: bool = False,
    log: Callable[[str], None] | None = None,
    jobs: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Chip ``images`` (GeoTIFF paths, globs, s3:// objects or prefixes) labelled by
    ``footprints`` (GeoJSON, the same kinds; paired as :mod:`looking_glass.datasets.inputs` says)
    into ``out_dir`` (see the module docstring), ``jobs`` images at a time in worker processes;
    ``progress(done, total)`` is called as candidate chips are cut. Returns the manifest that is
    also written. Raises PrepareError for bad inputs before anything is written; an image that
    fails while it is cut is skipped and named in the manifest's warnings."""
    cfg = config or PrepareConfig()
    cfg.validate()
    if not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1:
        raise PrepareError(f"jobs must be an integer >= 1, got {jobs!r}")
    say = log or (lambda _msg: None)
    out = Path(out_dir)
    check_out_dir(out, overwrite)
    if not images:
        raise PrepareError("no images given")
    if not footprints:
        raise PrepareError("no footprint files given")
    images = expand_inputs([str(p) for p in images], "images")
    footprints = expand_inputs([str(p) for p in footprints], "footprints")
    pairs = pair_inputs(images, footprints)

    with tempfile.TemporaryDirectory(prefix="lg-prepare-") as tmp:
        tmpdir = Path(tmp)
        # Validate everything before writing anything.
        local = {p: localize(p, tmpdir) for p in footprints}
        layers = {p: load_footprints(local[p], p) for p in footprints}
        _LAYERS.clear()  # read once here; a file edited since an earlier call is read anew
        _LAYERS.update({(str(local[p]), p): layer for p, layer in layers.items()})
        totals, unreadable, cells = _check_images(images, cfg, threads=4 * jobs)
        asked_block = cfg.split_block
        block, split_note = fit_split_block(cells, cfg.split_block, cfg.val_fraction, cfg.seed)
        cfg = replace(cfg, split_block=block)  # per chip when the chips make too few blocks
        total, done = sum(totals.values()), 0

        def tick(n: int) -> None:
            nonlocal done
            done += n
            if progress is not None:
                progress(done, total)

        prefixes = _chip_prefixes(images)
        tasks = [
            _Task(i, img, prefixes[i], tuple((str(local[f]), f) for f in fps), cfg, str(tmpdir / "parts" / f"{i:06d}"))
            for i, (img, fps) in enumerate(pairs) if img in totals
        ]
        results = _run_tasks(tasks, jobs, tick)
        with DatasetWriter(out, chip_size=cfg.chip_size, shard_size=cfg.shard_size, overwrite=overwrite, compress=cfg.compress) as writer:
            sources, warnings = [], [f"skipped: {reason}" for reason in unreadable] + split_note
            for r in results:
                if "error" in r:
                    warnings.append(f"skipped: {r['error']}")
                    continue
                part = Path(r["part"])
                writer.adopt(part, json.loads((part / "manifest.json").read_text()))
                s = r["summary"]
                say(f"{s['path']}: {s['candidate_chips']} chips, {s['written_chips']} written, "
                    f"{s['candidate_chips'] - s['written_chips']} dropped")
                sources.append(s)
                if "warning" in s:
                    warnings.append(s.pop("warning"))
            warnings += [w for fp in layers.values() for w in fp.warnings]
            warnings += [
                f"{fp.source}: the label file is empty: no buildings there (negative chips)"
                for fp in layers.values() if fp.empty
            ]
            if not sources:
                raise PrepareError("every image failed: " + "; ".join(warnings[:5]))
            if not writer.chips:
                warnings.append("no chips written: every chip was dropped for nodata (see max_nodata_fraction)")
            else:
                for split, wanted in (("train", cfg.val_fraction < 1), ("validation", cfg.val_fraction > 0)):
                    if wanted and not any(c["split"] == split for c in writer.chips):
                        warnings.append(f"no {split} chips: the {len(writer.chips)} chips are too few for "
                                        f"--val-fraction {cfg.val_fraction} (more images, or another --seed)")
            for w in warnings:
                say(f"warning: {w}")
            return writer.commit(
                mode=cfg.mode,
                sources={
                    "images": sources,
                    "footprints": [
                        {
                            "path": fp.source,
                            "crs": fp.crs.to_string(),
                            "polygons": len(fp.geoms),
                            "empty": fp.empty,
                            "repaired_or_skipped": fp.tally.skipped_count + len(fp.tally.repaired),
                        }
                        for fp in layers.values()
                    ],
                    "pairing": "per image" if len(images) > 1 and len(footprints) > 1 else "shared",
                },
                parameters=cfg.parameters(),
                **cfg.split_words(asked_block),
                warnings=warnings,
            )


def _chip_prefixes(images: Sequence[str]) -> list[str]:
    """Chip id prefixes: the image file stems, numbered when two images share a stem."""
    stems = [file_id(p) or "image" for p in images]
    seen: dict[str, int] = {}
    out = []
    for stem in stems:
        if stems.count(stem) > 1:
            seen[stem] = seen.get(stem, 0) + 1
            out.append(f"{stem}-{seen[stem]}")
        else:
            out.append(stem)
    return out


def _image_summary(img: RasterImage, candidates: int, written: int) -> dict:
    src = img.src
    return {
        "path": img.label,
        "crs": src.crs.to_string(),
        "width": src.width,
        "height": src.height,
        "band_count": src.count,
        "dtype": src.dtypes[0],
        "bands": list(img.bands),
        "resolution": [abs(src.transform.a), abs(src.transform.e)],
        "stretch": None
        if img.stretch is None
        else {"low": [round(float(v), 4) for v in img.stretch[0]], "high": [round(float(v), 4) for v in img.stretch[1]]},
        "candidate_chips": candidates,
        "written_chips": written,
    }
