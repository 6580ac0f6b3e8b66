"""Training data preparation: GeoTIFFs + GeoJSON building footprints -> sharded training chips.

``looking-glass prepare`` turns georeferenced imagery and building footprints into the chips the
DeepLab V3+ model trains on, in the chip format of :mod:`looking_glass.datasets.chips`. This
module is the orchestration; the pieces it uses each have one module:

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
* **Inputs** may be local paths or ``s3://bucket/key`` (downloaded with boto3 first, which honours
  ``AWS_ENDPOINT_URL``). Everything is validated before anything is written.
"""

from __future__ import annotations

import math
import os
import tempfile
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from affine import Affine

from looking_glass.datasets.chips import (
    DEFAULT_SHARD_SIZE,
    Chip,
    DatasetWriter,
    check_out_dir,
    load_split,
    write_dataset,
)
from looking_glass.datasets.errors import PrepareError
from looking_glass.datasets.labels import (
    load_footprints,
    project_footprints,
    rasterize_footprints,
    signed_distance_m,
)
from looking_glass.datasets.split import TILES_SPLIT_SOURCE, block_split, split_rule
from looking_glass.grid import (
    TILE_SIZE,
    ZOOM,
    pixel_row_areas_m2,
    tile_mercator_bounds,
    tile_resolution_m,
)
from looking_glass.imagery.raster import (
    DEFAULT_STRETCH_PERCENTILES,
    RasterError,
    RasterImage,
    alpha_bands,
    check_bands,
    check_stretch_percentiles,
    mercator_outline,
    open_geotiff,
    pixel_size_m,
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
# Chip, PrepareError, load_split, signed_distance_m and write_dataset are defined in chips,
# errors and labels; they are re-exported here for callers that still import them from prepare.

MODES = ("native", "tiles")
MIN_CHIP_SIZE = 32


@dataclass(frozen=True)
class PrepareConfig:
    """What ``prepare`` does: the chip mode and size, bands, label and split parameters and the
    shard layout (every field is recorded in the manifest's ``parameters``)."""

    chip_size: int = TILE_SIZE
    mode: str = "native"  # "native" | "tiles"
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

    def split_rule(self) -> str:
        """The split rule in words with this configuration's parameters (for the manifest)."""
        return split_rule(self.split_block, self.val_fraction, self.seed)



def localize(path: str, tmpdir: Path) -> Path:
    """A local file for ``path``: s3://bucket/key objects are downloaded into tmpdir (boto3,
    which honours ``AWS_ENDPOINT_URL``); raises PrepareError for a missing file or object."""
    path = str(path)
    if path.startswith("s3://"):
        bucket, _, key = path[5:].partition("/")
        if not bucket or not key or key.endswith("/"):
            raise PrepareError(f"{path}: not an s3://bucket/key object address")
        import boto3
        from botocore.exceptions import BotoCoreError, ClientError

        local = tmpdir / uuid.uuid4().hex[:8] / Path(key).name
        local.parent.mkdir(parents=True)
        try:
            boto3.client("s3").download_file(bucket, key, str(local))
        except ClientError as e:
            code = str(e.response.get("Error", {}).get("Code", ""))
            if code in ("404", "NoSuchKey", "NoSuchBucket", "NotFound"):
                raise PrepareError(f"{path}: no such S3 object") from e
            raise PrepareError(f"{path}: could not download: {e}") from e
        except BotoCoreError as e:
            raise PrepareError(f"{path}: could not download: {e}") from e
        return local
    local = Path(path)
    if not local.exists():
        raise PrepareError(f"{path}: no such file")
    if not local.is_file():
        raise PrepareError(f"{path}: not a file")
    return local


def _margin_px(clip_m: float, px: tuple[float, float]) -> int:
    return int(math.ceil(clip_m / min(px))) + 1


def _finish_chip(
    img: RasterImage, data: np.ndarray, footprint_mask: np.ndarray, margin: int, size: int, px: tuple[float, float], clip_m: float
):
    """Expanded (3, S+2m, S+2m) data and footprint raster -> image, mask, sdt, nodata fraction."""
    valid = ~np.isnan(data).any(0)
    mask_full = (footprint_mask > 0) & valid
    sdt = signed_distance_m(mask_full, px, clip_m)
    crop = (slice(margin, margin + size), slice(margin, margin + size))
    nodata_fraction = 1.0 - float(valid[crop].mean())
    image = img.to_uint8(data[:, crop[0], crop[1]])
    return image, mask_full[crop].astype(np.uint8), sdt[crop], nodata_fraction


def _native_chips(img: RasterImage, chip_id: str, layers, cfg: PrepareConfig, writer: DatasetWriter) -> int:
    from rasterio.transform import array_bounds

    src, s = img.src, cfg.chip_size
    b = img.bounds
    lat = None
    if src.crs.is_geographic:
        lat = (b.bottom + b.top) / 2
    px = pixel_size_m(src.crs, img.transform, lat)
    margin = _margin_px(cfg.sdt_clip_m, px)
    rows, cols = math.ceil(src.height / s), math.ceil(src.width / s)
    # Footprints near the whole (padded) chip grid, in the image's CRS.
    left, top = img.transform @ (-margin, -margin)
    right, bottom = img.transform @ (cols * s + margin, rows * s + margin)
    near = (min(left, right), min(top, bottom), max(left, right), max(top, bottom))
    geoms, tree = project_footprints(layers, src.crs, near)
    crs_text = src.crs.to_string()
    n = 0
    for r in range(rows):
        for c in range(cols):
            n += 1
            row0, col0 = r * s - margin, c * s - margin
            size = s + 2 * margin
            data = img.read(row0, col0, size, size)
            t_exp = img.transform @ Affine.translation(col0, row0)
            fp = rasterize_footprints(geoms, tree, t_exp, (size, size))
            t_chip = img.transform @ Affine.translation(c * s, r * s)
            chip_px = px
            if src.crs.is_geographic:  # metres per degree of longitude change with latitude
                chip_px = pixel_size_m(src.crs, img.transform, (t_chip @ (s / 2, s / 2))[1])
            image, mask, sdt, nodata = _finish_chip(img, data, fp, margin, s, chip_px, cfg.sdt_clip_m)
            if nodata >= 1.0 or nodata > cfg.max_nodata_fraction:
                writer.drop("nodata")
                continue
            west, south, east, north = array_bounds(s, s, t_chip)
            split = block_split(
                Path(img.label).name, r, c, split_block=cfg.split_block, val_fraction=cfg.val_fraction, seed=cfg.seed
            )
            writer.add(
                Chip(
                    id=f"{chip_id}_r{r:03d}_c{c:03d}",
                    split=split,
                    image=image,
                    mask=mask,
                    sdt=sdt,
                    source=img.label,
                    crs=crs_text,
                    bounds=(west, south, east, north),
                    pixel_size_m=chip_px,
                    meta={"row": r, "col": c, "nodata_fraction": round(nodata, 6)},
                )
            )
    return n


def _tiles_chips(img: RasterImage, chip_id: str, layers, cfg: PrepareConfig, writer: DatasetWriter) -> int:
    import mercantile
    import shapely
    from rasterio.crs import CRS
    from rasterio.warp import Resampling, reproject, transform_bounds
    from rasterio.windows import from_bounds

    src, s = img.src, cfg.chip_size
    merc = CRS.from_epsg(3857)
    # The image's outline in web mercator (densified edges), to skip tiles it does not touch.
    outline = mercator_outline(src)
    west, south, east, north = transform_bounds(src.crs, "EPSG:4326", *img.bounds, densify_pts=21)
    tiles = [t for t in mercantile.tiles(west, south, east, north, ZOOM)
             if outline.intersects(shapely.box(*tile_mercator_bounds(t.x, t.y, ZOOM)))]
    if not tiles:
        return 0

    margin = max(_margin_px(cfg.sdt_clip_m, (tile_resolution_m(t.x, t.y, ZOOM),) * 2) for t in tiles)
    size = s + 2 * margin
    mb = shapely.bounds(outline)
    first = tile_mercator_bounds(tiles[0].x, tiles[0].y, ZOOM)
    pad = (margin + 1) * (first[2] - first[0]) / s
    geoms, tree = project_footprints(layers, merc, (mb[0] - pad, mb[1] - pad, mb[2] + pad, mb[3] + pad))
    n = 0
    for t in tiles:
        n += 1
        left, bottom, right, top = tile_mercator_bounds(t.x, t.y, ZOOM)
        res = (right - left) / s
        t_exp = Affine(res, 0.0, left - margin * res, 0.0, -res, top + margin * res)
        exp_bounds = (left - margin * res, bottom - margin * res, right + margin * res, top + margin * res)
        sb = transform_bounds(merc, src.crs, *exp_bounds, densify_pts=21)
        win = from_bounds(*sb, transform=img.transform)
        row0 = int(math.floor(win.row_off)) - 2
        col0 = int(math.floor(win.col_off)) - 2
        r1 = min(int(math.ceil(win.row_off + win.height)) + 2, src.height)
        c1 = min(int(math.ceil(win.col_off + win.width)) + 2, src.width)
        row0, col0 = max(row0, 0), max(col0, 0)
        dst = np.full((3, size, size), np.nan, np.float32)
        if r1 > row0 and c1 > col0:
            data = img.read(row0, col0, r1 - row0, c1 - col0)
            if not np.isnan(data).all():
                reproject(
                    source=data,
                    destination=dst,
                    src_transform=img.transform @ Affine.translation(col0, row0),
                    src_crs=src.crs,
                    src_nodata=np.nan,
                    dst_transform=t_exp,
                    dst_crs=merc,
                    dst_nodata=np.nan,
                    resampling=Resampling.bilinear,
                    num_threads=1,
                )
        g = tile_resolution_m(t.x, t.y, ZOOM)
        fp = rasterize_footprints(geoms, tree, t_exp, (size, size))
        image, mask, sdt, nodata = _finish_chip(img, dst, fp, margin, s, (g, g), cfg.sdt_clip_m)
        if nodata >= 1.0 or nodata > cfg.max_nodata_fraction:
            writer.drop("nodata")
            continue
        area = float(mask.sum(axis=1, dtype=np.float64) @ pixel_row_areas_m2(t.x, t.y, ZOOM, s))
        split = block_split(
            TILES_SPLIT_SOURCE, t.y, t.x, split_block=cfg.split_block, val_fraction=cfg.val_fraction, seed=cfg.seed
        )
        writer.add(
            Chip(
                id=f"{chip_id}_{ZOOM}_{t.x}_{t.y}",
                split=split,
                image=image,
                mask=mask,
                sdt=sdt,
                source=img.label,
                crs="EPSG:3857",
                bounds=(left, bottom, right, top),
                pixel_size_m=(g, g),
                building_area_m2=area,
                meta={"tile": [ZOOM, t.x, t.y], "nodata_fraction": round(nodata, 6)},
            )
        )
    return n


def prepare(
    images: Sequence[str],
    footprints: Sequence[str],
    out_dir: str | os.PathLike,
    config: PrepareConfig | None = None,
    *,
    overwrite: bool = False,
    log: Callable[[str], None] | None = None,
) -> dict:
    """Chip ``images`` (GeoTIFF paths or s3:// URIs) labelled by ``footprints`` (GeoJSON) into
    ``out_dir`` (see the module docstring); returns the manifest that is also written."""
    cfg = config or PrepareConfig()
    cfg.validate()
    say = log or (lambda _msg: None)
    out = Path(out_dir)
    check_out_dir(out, overwrite)
    images, footprints = [str(p) for p in images], [str(p) for p in footprints]
    if not images:
        raise PrepareError("no images given")
    if not footprints:
        raise PrepareError("no footprint files given")

    with tempfile.TemporaryDirectory(prefix="lg-prepare-") as tmp:
        tmpdir = Path(tmp)
        # Validate everything before writing anything.
        layers = [load_footprints(localize(p, tmpdir), p) for p in footprints]
        opened: list[RasterImage] = []
        try:
            for p in images:
                try:
                    src = open_geotiff(localize(p, tmpdir), p)
                except RasterError as e:
                    raise PrepareError(str(e)) from e.__cause__
                try:
                    opened.append(RasterImage(src, p, select_bands(src.count, cfg.bands, p, alpha_bands(src)), cfg.stretch_percentiles))
                except RasterError as e:
                    src.close()
                    raise PrepareError(str(e)) from None
                except BaseException:
                    src.close()
                    raise
            ids = _chip_prefixes(images)
            sources = []
            writer = DatasetWriter(
                out, chip_size=cfg.chip_size, shard_size=cfg.shard_size, overwrite=overwrite, compress=cfg.compress
            )
            with writer:
                for img, prefix in zip(opened, ids):
                    before = len(writer.chips)
                    dropped_before = sum(writer.dropped.values())
                    if cfg.mode == "native":
                        candidates = _native_chips(img, prefix, layers, cfg, writer)
                    else:
                        candidates = _tiles_chips(img, prefix, layers, cfg, writer)
                    written = len(writer.chips) - before
                    dropped = sum(writer.dropped.values()) - dropped_before
                    say(f"{img.label}: {candidates} chips, {written} written, {dropped} dropped")
                    sources.append(_image_summary(img, candidates, written))
                warnings = [w for fp in layers for w in fp.warnings]
                warnings += [
                    f"{fp.source}: the label file is empty: no buildings there (negative chips)"
                    for fp in layers if fp.empty
                ]
                if not writer.chips:
                    warnings.append("no chips written: every chip was dropped for nodata (see max_nodata_fraction)")
                else:
                    for split, wanted in (("train", cfg.val_fraction < 1), ("validation", cfg.val_fraction > 0)):
                        if wanted and not any(c["split"] == split for c in writer.chips):
                            warnings.append(f"no {split} chips: too few split blocks; try a smaller split_block")
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
                                "repaired_or_skipped": len(fp.warnings),
                            }
                            for fp in layers
                        ],
                    },
                    parameters=_parameters(cfg),
                    split_rule=cfg.split_rule(),
                    warnings=warnings,
                )
        finally:
            for img in opened:
                img.src.close()


def _chip_prefixes(images: Sequence[str]) -> list[str]:
    """Chip id prefixes: the image file stems, numbered when two images share a stem."""
    stems = [Path(p.rstrip("/")).stem or "image" for p in images]
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


def _parameters(cfg: PrepareConfig) -> dict:
    params = asdict(cfg)
    params["bands"] = list(cfg.bands) if cfg.bands is not None else None
    params["stretch_percentiles"] = list(cfg.stretch_percentiles)
    params["zoom"] = ZOOM
    params["resampling"] = "bilinear" if cfg.mode == "tiles" else None
    return params
