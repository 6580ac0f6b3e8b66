"""Training data preparation: GeoTIFFs + GeoJSON building footprints -> sharded training chips.

``looking-glass prepare`` turns georeferenced imagery and building footprints into the chips the
DeepLab V3+ model trains on. The same on-disk format is written by the synthetic-data generator
through :class:`DatasetWriter` / :func:`write_dataset`, so training reads one format only.

Output format (``out_dir``)
---------------------------
``train/shard-00000.npz``, ``train/shard-00001.npz``, ..., ``validation/shard-00000.npz``, ...
Each shard is a NumPy ``.npz`` (zip-compressed unless ``compress=False``) holding N chips:

``image``     (N, S, S, 3) uint8   RGB; nodata/black and padding pixels are 0.
``mask``      (N, S, S)    uint8   1 = building, 0 = not building (0 wherever the image has no
                                   data: a label on a black pixel would teach the model nonsense).
``sdt``       (N, S, S)    float32 signed distance to the building boundary in metres: positive
                                   inside buildings, negative outside, clipped to +-``sdt_clip_m``.
                                   ``sdt > 0`` exactly where ``mask == 1``.
``chip_ids``  (N,)         str     ids, matching ``manifest.json``.

``manifest.json`` records the format version, counts (chips written per split, dropped for
nodata, total candidates), class balance (building pixel fraction per split), the shards, the
source files, every parameter, the split rule in words, and one entry per chip (id, source, split,
shard file and index, CRS, bounds in that CRS, pixel size in metres (x, y), building pixels,
building area in m2, nodata fraction, plus the chip's grid position: ``row``/``col`` in native
mode, ``tile`` [z, x, y] in tiles mode).

Rules
-----
* **Modes.** ``native``: chips of ``chip_size`` px on the image's own pixel grid, starting at the
  top-left corner; chips at the right/bottom edge that extend past the image are padded with
  nodata (and so count towards the nodata fraction). ``tiles``: chips are the 256 px web-mercator
  zoom-18 tiles (:mod:`looking_glass.grid`) that the image overlaps, reprojected with
  ``rasterio.warp.reproject`` (bilinear), so training sees exactly what inference sees.
* **Bands.** ``bands`` are 1-based indices: 1 index (replicated to grey RGB) or 3 (R, G, B). With
  ``bands=None`` a 1-band image is replicated and a 3-band image uses (1, 2, 3); images with 2 or
  4+ bands must name their bands (e.g. ``(1, 2, 3)`` for the first three, or ``(3, 2, 1)``).
* **Radiometry.** uint8 imagery passes through. Anything else (uint16 and other types) gets a
  per-image, per-band linear percentile stretch: the ``stretch_percentiles`` (default 2 and 98)
  of the image's valid pixels map to 0 and 255, clipped (as the 2018 original did for 16-bit
  data). Percentiles are computed once per image (on a decimated read for large images), never
  per chip, so chips of one image share one colour mapping.
* **Nodata.** A pixel is nodata when the dataset mask says so (nodata value, alpha band or
  internal mask), when all its selected bands are 0 (black), or when it lies outside the image.
  A chip whose nodata fraction exceeds ``max_nodata_fraction`` is dropped and counted; a chip
  with no valid pixel at all is always dropped (so ``max_nodata_fraction=1.0`` keeps every chip
  with any data).
* **Labels.** Footprints (Polygon / MultiPolygon; other geometry types are ignored) are read
  with their CRS: the legacy GeoJSON ``crs`` member (e.g. ``urn:ogc:def:crs:EPSG::32616``) when
  present, else EPSG:4326 (RFC 7946). All footprint files form one layer that labels every image.
  They are reprojected to the chip's CRS and rasterized with ``rasterio.features.rasterize``
  (pixel-centre rule, so areas are unbiased).
* **Signed distance.** Computed in metres at the chip's real ground resolution (native: the
  GeoTIFF's pixel size, converted to metres; tiles: :func:`looking_glass.grid.ground_resolution_m`
  at the tile's latitude) with :func:`signed_distance_m`. It is computed on the chip plus a margin
  of ``sdt_clip_m`` so values near chip edges see the buildings (and the image edge) beyond them.
* **Split.** Chips are grouped into blocks of ``split_block`` x ``split_block`` chips on their
  grid (native: chip row/column in the image; tiles: tile y/x at zoom 18). A whole block goes to
  validation when ``blake2b(f"{seed}|{source}|{block_row}|{block_col}")`` read as a number in
  [0, 1) is below ``val_fraction``, else to train. Neighbouring chips in a block never straddle
  train and validation, and the assignment of a block never depends on other inputs. ``source``
  is the image's file name in native mode and the shared grid name ``web-mercator-z18`` in tiles
  mode, so the same tile from two overlapping images lands in the same split.
* **Atomic output.** Everything is written to a hidden temporary directory beside ``out_dir`` and
  renamed into place at the end; nothing is left behind on error. A non-empty ``out_dir`` is
  refused unless ``overwrite=True``, and even then only when it holds a dataset of this format.
* **Inputs** may be local paths or ``s3://bucket/key`` (downloaded with boto3 first, which honours
  ``AWS_ENDPOINT_URL``).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
import uuid
import warnings
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
from affine import Affine

from looking_glass.errors import LookingGlassError
from looking_glass.grid import TILE_SIZE, ZOOM, ground_resolution_m, pixel_row_areas_m2, tile_center_lat

FORMAT_NAME = "looking-glass-chips"
FORMAT_VERSION = 1
SPLITS = ("train", "validation")
MODES = ("native", "tiles")
MIN_CHIP_SIZE = 32
TILES_SPLIT_SOURCE = f"web-mercator-z{ZOOM}"
# Percentiles are computed on a read decimated to at most this many pixels per side.
STRETCH_SAMPLE_PX = 2048
EARTH_RADIUS_M = 6378137.0

SPLIT_RULE = (
    "Chips are grouped into blocks of {block} x {block} chips on their grid (native mode: chip "
    "row/column within the image; tiles mode: zoom-{zoom} tile y/x). A whole block goes to "
    "validation when blake2b('{{seed}}|{{source}}|{{block_row}}|{{block_col}}', 8 bytes) read as a "
    "big-endian fraction of 2**64 is below val_fraction={val}, else to train (seed={seed}; source "
    "is the image file name in native mode and '{tiles_source}' in tiles mode). Neighbouring chips "
    "in a block never straddle train and validation."
)


class PrepareError(LookingGlassError, ValueError):
    """Bad input or configuration for data preparation (the message says which and why)."""


@dataclass(frozen=True)
class PrepareConfig:
    chip_size: int = TILE_SIZE
    mode: str = "native"  # "native" | "tiles"
    bands: tuple[int, ...] | None = None  # 1-based; 1 index (grey) or 3 (R, G, B)
    sdt_clip_m: float = 10.0
    max_nodata_fraction: float = 0.2
    val_fraction: float = 0.2
    split_block: int = 4
    stretch_percentiles: tuple[float, float] = (2.0, 98.0)
    shard_size: int = 256
    seed: int = 0
    compress: bool = True

    def validate(self) -> None:
        if self.mode not in MODES:
            raise PrepareError(f"mode must be one of {MODES}, got {self.mode!r}")
        if not isinstance(self.chip_size, int) or self.chip_size < MIN_CHIP_SIZE:
            raise PrepareError(f"chip_size must be an integer >= {MIN_CHIP_SIZE}, got {self.chip_size!r}")
        if self.mode == "tiles" and self.chip_size != TILE_SIZE:
            raise PrepareError(
                f"tiles mode chips are the {TILE_SIZE} px zoom-{ZOOM} tiles: chip_size must be "
                f"{TILE_SIZE}, got {self.chip_size}"
            )
        if self.bands is not None:
            if len(self.bands) not in (1, 3):
                raise PrepareError(f"bands must name 1 band (grey) or 3 bands (R, G, B), got {tuple(self.bands)}")
            for b in self.bands:
                if not isinstance(b, (int, np.integer)) or isinstance(b, bool) or b < 1:
                    raise PrepareError(f"band indices are 1-based integers, got {b!r} in {tuple(self.bands)}")
        if not (isinstance(self.sdt_clip_m, (int, float)) and math.isfinite(self.sdt_clip_m) and self.sdt_clip_m > 0):
            raise PrepareError(f"sdt_clip_m must be a positive number of metres, got {self.sdt_clip_m!r}")
        for name in ("max_nodata_fraction", "val_fraction"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0.0 <= value <= 1.0):
                raise PrepareError(f"{name} must be a fraction between 0 and 1, got {value!r}")
        if not isinstance(self.split_block, int) or self.split_block < 1:
            raise PrepareError(f"split_block must be an integer >= 1, got {self.split_block!r}")
        lo, hi = self.stretch_percentiles
        if not (0.0 <= lo < hi <= 100.0):
            raise PrepareError(f"stretch_percentiles must satisfy 0 <= low < high <= 100, got {(lo, hi)}")
        if not isinstance(self.shard_size, int) or self.shard_size < 1:
            raise PrepareError(f"shard_size must be an integer >= 1, got {self.shard_size!r}")
        if not isinstance(self.seed, int):
            raise PrepareError(f"seed must be an integer, got {self.seed!r}")

    def split_rule(self) -> str:
        return SPLIT_RULE.format(
            block=self.split_block, zoom=ZOOM, val=self.val_fraction, seed=self.seed, tiles_source=TILES_SPLIT_SOURCE
        )


# --------------------------------------------------------------------------------------------
# Reusable pieces: signed distance, split assignment, the writer


def signed_distance_m(mask: np.ndarray, pixel_size_m, clip_m: float = 10.0) -> np.ndarray:
    """Signed distance to the building boundary in metres, float32, clipped to +-``clip_m``.

    ``pixel_size_m`` is one number (square pixels) or ``(x_m, y_m)``. Inside pixels get the
    distance from their centre to the nearest outside pixel centre minus half a pixel (the boundary
    lies between the two centres), outside pixels the negated distance to the nearest inside pixel
    centre minus half a pixel; so every inside pixel is >= +res/2 and every outside pixel <= -res/2,
    and ``sdt > 0`` exactly where ``mask`` is set. A mask with no building is -clip everywhere, a
    mask that is all building +clip everywhere.
    """
    from scipy import ndimage

    m = np.asarray(mask).astype(bool)
    if np.ndim(pixel_size_m) == 0:
        sx = sy = float(pixel_size_m)
    else:
        sx, sy = (float(v) for v in pixel_size_m)
    if not (sx > 0 and sy > 0 and clip_m > 0):
        raise ValueError(f"pixel size and clip must be positive, got {(sx, sy)} and {clip_m}")
    if not m.any():
        return np.full(m.shape, -clip_m, np.float32)
    if m.all():
        return np.full(m.shape, clip_m, np.float32)
    half = 0.5 * min(sx, sy)
    inside = ndimage.distance_transform_edt(m, sampling=(sy, sx))
    outside = ndimage.distance_transform_edt(~m, sampling=(sy, sx))
    sdt = np.where(m, inside - half, half - outside)
    return np.clip(sdt, -clip_m, clip_m).astype(np.float32)


def block_split(source: str, row: int, col: int, *, split_block: int, val_fraction: float, seed: int = 0) -> str:
    """The split of the chip at grid position (row, col) of ``source`` (see SPLIT_RULE)."""
    block_row, block_col = row // split_block, col // split_block
    digest = hashlib.blake2b(f"{seed}|{source}|{block_row}|{block_col}".encode(), digest_size=8).digest()
    u = int.from_bytes(digest, "big") / 2.0**64
    return "validation" if u < val_fraction else "train"


@dataclass
class Chip:
    """One training chip and what the manifest says about it."""

    id: str
    split: str  # "train" | "validation"
    image: np.ndarray  # (S, S, 3) uint8
    mask: np.ndarray  # (S, S) uint8 0/1
    sdt: np.ndarray  # (S, S) float32, metres
    source: str
    crs: str
    bounds: tuple[float, float, float, float]  # (left, bottom, right, top) in crs
    pixel_size_m: tuple[float, float]  # (x, y)
    building_area_m2: float | None = None  # default: building pixels x pixel_size_m area
    meta: dict = field(default_factory=dict)  # extra manifest fields, e.g. tile, row/col


class DatasetWriter:
    """Writes chips into the sharded format atomically.

    Use as a context manager: ``add()`` chips, ``drop()`` to count dropped ones, and ``commit()``
    with the manifest's extra fields; leaving the block with an exception (or without commit)
    removes the temporary directory and leaves ``out_dir`` untouched.
    """

    def __init__(
        self,
        out_dir: str | os.PathLike,
        *,
        chip_size: int = TILE_SIZE,
        shard_size: int = 256,
        overwrite: bool = False,
        compress: bool = True,
    ):
        self.out_dir = Path(out_dir)
        self.chip_size = int(chip_size)
        self.shard_size = int(shard_size)
        self.compress = compress
        self.overwrite = overwrite
        check_out_dir(self.out_dir, overwrite)
        self.out_dir.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.out_dir.parent / f".{self.out_dir.name}.partial-{uuid.uuid4().hex[:10]}"
        self.tmp.mkdir()
        for split in SPLITS:
            (self.tmp / split).mkdir()
        self.chips: list[dict] = []
        self.dropped: dict[str, int] = {}
        self.shards: dict[str, list[dict]] = {s: [] for s in SPLITS}
        self._buf: dict[str, dict] = {}
        self._ids: set[str] = set()
        self._building_px = {s: 0 for s in SPLITS}
        self._count = {s: 0 for s in SPLITS}
        self._done = False

    def __enter__(self) -> "DatasetWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self._done:
            self.abort()

    def abort(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)
        self._done = True

    def drop(self, reason: str = "nodata", n: int = 1) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + n

    def add(self, chip: Chip) -> None:
        s = self.chip_size
        if chip.split not in SPLITS:
            raise ValueError(f"chip {chip.id}: split must be one of {SPLITS}, got {chip.split!r}")
        if chip.id in self._ids:
            raise ValueError(f"duplicate chip id {chip.id!r}")
        image, mask, sdt = np.asarray(chip.image), np.asarray(chip.mask), np.asarray(chip.sdt)
        if image.shape != (s, s, 3) or image.dtype != np.uint8:
            raise ValueError(f"chip {chip.id}: image must be ({s}, {s}, 3) uint8, got {image.shape} {image.dtype}")
        if mask.shape != (s, s) or sdt.shape != (s, s):
            raise ValueError(f"chip {chip.id}: mask and sdt must be ({s}, {s}), got {mask.shape} and {sdt.shape}")
        mask = mask.astype(np.uint8)
        if mask.max(initial=0) > 1:
            raise ValueError(f"chip {chip.id}: mask must be 0/1")
        sdt = sdt.astype(np.float32)
        if not np.array_equal(sdt > 0, mask == 1):
            raise ValueError(f"chip {chip.id}: sdt sign disagrees with the mask")
        self._ids.add(chip.id)

        buf = self._buf.get(chip.split)
        if buf is None:
            n = self.shard_size
            buf = self._buf[chip.split] = {
                "image": np.zeros((n, s, s, 3), np.uint8),
                "mask": np.zeros((n, s, s), np.uint8),
                "sdt": np.zeros((n, s, s), np.float32),
                "ids": [],
            }
        i = len(buf["ids"])
        buf["image"][i], buf["mask"][i], buf["sdt"][i] = image, mask, sdt
        buf["ids"].append(chip.id)

        building_px = int(mask.sum(dtype=np.int64))
        px_x, px_y = (float(v) for v in chip.pixel_size_m)
        area = chip.building_area_m2 if chip.building_area_m2 is not None else building_px * px_x * px_y
        self._building_px[chip.split] += building_px
        self._count[chip.split] += 1
        self.chips.append(
            {
                "id": chip.id,
                "source": chip.source,
                "split": chip.split,
                "shard": f"{chip.split}/shard-{len(self.shards[chip.split]):05d}.npz",
                "index": i,
                "crs": chip.crs,
                "bounds": [float(v) for v in chip.bounds],
                "pixel_size_m": [px_x, px_y],
                "building_pixels": building_px,
                "building_area_m2": round(float(area), 4),
                **chip.meta,
            }
        )
        if len(buf["ids"]) == self.shard_size:
            self._flush(chip.split)

    def _flush(self, split: str) -> None:
        buf = self._buf.pop(split, None)
        if not buf or not buf["ids"]:
            return
        n = len(buf["ids"])
        name = f"{split}/shard-{len(self.shards[split]):05d}.npz"
        save = np.savez_compressed if self.compress else np.savez
        with open(self.tmp / name, "wb") as f:
            save(f, image=buf["image"][:n], mask=buf["mask"][:n], sdt=buf["sdt"][:n], chip_ids=np.array(buf["ids"], dtype=str))
        self.shards[split].append({"file": name, "chips": n})

    def commit(self, **extra) -> dict:
        """Flush, write manifest.json and move the dataset into place; returns the manifest."""
        for split in SPLITS:
            self._flush(split)
        pixels = self.chip_size * self.chip_size
        written = sum(self._count.values())
        dropped_total = sum(self.dropped.values())
        balance = {
            split: (self._building_px[split] / (self._count[split] * pixels) if self._count[split] else None)
            for split in SPLITS
        }
        balance["all"] = sum(self._building_px.values()) / (written * pixels) if written else None
        manifest = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "chip_size": self.chip_size,
            "arrays": {
                "image": "(N, S, S, 3) uint8 RGB; 0 on nodata",
                "mask": "(N, S, S) uint8, 1 = building",
                "sdt": "(N, S, S) float32 signed distance to the building boundary in metres, + inside",
                "chip_ids": "(N,) str",
            },
            "counts": {
                "train": self._count["train"],
                "validation": self._count["validation"],
                "written": written,
                **{f"dropped_{k}": v for k, v in sorted(self.dropped.items())},
                "dropped": dropped_total,
                "total": written + dropped_total,
            },
            "class_balance": {"building_pixel_fraction": balance},
            "shards": self.shards,
            **extra,
            "chips": self.chips,
        }
        with open(self.tmp / "manifest.json", "w") as f:
            json.dump(manifest, f, indent=1)
        _move_into_place(self.tmp, self.out_dir, self.overwrite)
        self._done = True
        return manifest


def write_dataset(
    out_dir: str | os.PathLike,
    chips: Iterable[Chip],
    *,
    chip_size: int = TILE_SIZE,
    shard_size: int = 256,
    overwrite: bool = False,
    compress: bool = True,
    dropped: dict[str, int] | None = None,
    **manifest_extra,
) -> dict:
    """Write an iterable of chips (e.g. from the synthetic generator) in the prepare format."""
    with DatasetWriter(out_dir, chip_size=chip_size, shard_size=shard_size, overwrite=overwrite, compress=compress) as w:
        for chip in chips:
            w.add(chip)
        for reason, n in (dropped or {}).items():
            w.drop(reason, n)
        return w.commit(**manifest_extra)


def load_split(out_dir: str | os.PathLike, split: str) -> dict[str, np.ndarray]:
    """All shards of one split concatenated: image, mask, sdt, chip_ids (for tests and small sets)."""
    files = sorted((Path(out_dir) / split).glob("shard-*.npz"))
    parts: dict[str, list] = {"image": [], "mask": [], "sdt": [], "chip_ids": []}
    for f in files:
        with np.load(f) as z:
            for k in parts:
                parts[k].append(z[k])
    manifest = json.loads((Path(out_dir) / "manifest.json").read_text())
    s = manifest["chip_size"]
    empty = {"image": ((0, s, s, 3), np.uint8), "mask": ((0, s, s), np.uint8), "sdt": ((0, s, s), np.float32)}
    out = {}
    for k, v in parts.items():
        if v:
            out[k] = np.concatenate(v)
        else:
            out[k] = np.zeros(*empty[k]) if k in empty else np.array([], dtype=str)
    return out


def check_out_dir(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise PrepareError(f"{out_dir}: exists and is not a directory")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if not overwrite:
            raise PrepareError(f"{out_dir}: directory is not empty (pass overwrite=True / --overwrite to replace it)")
        if not _is_dataset(out_dir):
            raise PrepareError(
                f"{out_dir}: not empty and holds no {FORMAT_NAME} manifest.json; refusing to overwrite it"
            )


def _is_dataset(path: Path) -> bool:
    try:
        return json.loads((path / "manifest.json").read_text()).get("format") == FORMAT_NAME
    except (OSError, ValueError, AttributeError):
        return False


def _move_into_place(tmp: Path, out_dir: Path, overwrite: bool) -> None:
    check_out_dir(out_dir, overwrite)  # again: something may have appeared meanwhile
    old = None
    if out_dir.is_dir():
        if any(out_dir.iterdir()):
            old = out_dir.parent / f".{out_dir.name}.old-{uuid.uuid4().hex[:10]}"
            os.rename(out_dir, old)
        else:
            out_dir.rmdir()
    os.rename(tmp, out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# Inputs: local or s3 paths, GeoTIFFs, GeoJSON footprints


def _localize(path: str, tmpdir: Path) -> Path:
    """A local file for ``path``: s3://bucket/key objects are downloaded into tmpdir."""
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


def _parse_geojson_crs(doc: dict, label: str):
    from rasterio.crs import CRS
    from rasterio.errors import CRSError

    member = doc.get("crs")
    if member is None:
        return CRS.from_epsg(4326)  # RFC 7946: WGS 84 longitude/latitude
    props = member.get("properties", {}) if isinstance(member, dict) else {}
    kind = member.get("type") if isinstance(member, dict) else None
    if kind == "name" and isinstance(props.get("name"), str):
        text = props["name"]
    elif kind in ("EPSG", "epsg") and "code" in props:
        text = f"EPSG:{props['code']}"
    else:
        raise PrepareError(f"{label}: unsupported GeoJSON crs member {member!r} (use a 'name' crs or none)")
    try:
        return CRS.from_user_input(text)
    except CRSError as e:
        raise PrepareError(f"{label}: unknown CRS {text!r} in the crs member") from e


def _polygons(geom: dict | None, out: list) -> None:
    import shapely.geometry

    if not isinstance(geom, dict):
        return
    kind = geom.get("type")
    if kind in ("Polygon", "MultiPolygon"):
        try:
            out.append(shapely.geometry.shape(geom))
        except Exception:  # noqa: BLE001 - malformed coordinates: reported as no polygons below
            pass
    elif kind == "GeometryCollection":
        for g in geom.get("geometries") or []:
            _polygons(g, out)


@dataclass
class _Footprints:
    source: str
    crs: object  # rasterio CRS
    geoms: np.ndarray  # shapely polygons in crs
    tree: object  # shapely STRtree


def _load_footprints(local: Path, label: str) -> _Footprints:
    import shapely

    try:
        doc = json.loads(local.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise PrepareError(f"{label}: not GeoJSON (not valid JSON: {e})") from e
    if not isinstance(doc, dict) or "type" not in doc:
        raise PrepareError(f"{label}: not GeoJSON (no 'type' member)")
    crs = _parse_geojson_crs(doc, label)
    geoms: list = []
    kind = doc["type"]
    if kind == "FeatureCollection":
        for feat in doc.get("features") or []:
            if isinstance(feat, dict):
                _polygons(feat.get("geometry"), geoms)
    elif kind == "Feature":
        _polygons(doc.get("geometry"), geoms)
    elif kind in ("Polygon", "MultiPolygon", "GeometryCollection"):
        _polygons(doc, geoms)
    elif kind not in ("Point", "MultiPoint", "LineString", "MultiLineString"):
        raise PrepareError(f"{label}: not GeoJSON (unknown type {kind!r})")
    geoms = [g for g in geoms if not g.is_empty]
    if not geoms:
        raise PrepareError(f"{label}: no Polygon or MultiPolygon footprints in the file")
    arr = shapely.force_2d(np.array(geoms, dtype=object))
    return _Footprints(label, crs, arr, shapely.STRtree(arr))


def _open_image(local: Path, label: str):
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioIOError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)  # reported below instead
            src = rasterio.open(local)
    except RasterioIOError as e:
        raise PrepareError(f"{label}: not a GeoTIFF (cannot be read as a raster)") from e
    if src.driver != "GTiff":
        src.close()
        raise PrepareError(f"{label}: not a GeoTIFF (GDAL reads it as {src.driver})")
    if src.crs is None:
        src.close()
        raise PrepareError(f"{label}: the GeoTIFF has no CRS")
    if src.transform.is_identity or src.transform.b != 0 or src.transform.d != 0:
        src.close()
        raise PrepareError(f"{label}: the GeoTIFF needs a north-up geotransform (none or rotated found)")
    return src


def _select_bands(count: int, bands: Sequence[int] | None, label: str) -> tuple[int, int, int]:
    if bands is None:
        if count == 1:
            return (1, 1, 1)
        if count == 3:
            return (1, 2, 3)
        raise PrepareError(
            f"{label}: has {count} bands; say which to use as RGB with bands (e.g. (1, 2, 3) for the first three)"
        )
    for b in bands:
        if b > count:
            raise PrepareError(f"{label}: band index {b} out of range (the image has {count} band(s))")
    return tuple(bands) * 3 if len(bands) == 1 else tuple(bands)  # type: ignore[return-value]


# --------------------------------------------------------------------------------------------
# Per-image reading


class _Image:
    """An open GeoTIFF with its band selection and colour mapping."""

    def __init__(self, src, label: str, bands: tuple[int, int, int], percentiles: tuple[float, float]):
        self.src = src
        self.label = label
        self.bands = bands
        self.unique = sorted(set(bands))
        self.pos = [self.unique.index(b) for b in bands]
        self.stretch: tuple[np.ndarray, np.ndarray] | None = None
        if any(np.dtype(src.dtypes[b - 1]) != np.uint8 for b in bands):
            self.stretch = self._percentiles(percentiles)

    def _percentiles(self, pct: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
        h, w = self.src.height, self.src.width
        f = max(1, math.ceil(max(h, w) / STRETCH_SAMPLE_PX))
        shape = (max(1, h // f), max(1, w // f))
        data = self.src.read(self.unique, out_shape=(len(self.unique), *shape), out_dtype="float32")[self.pos]
        valid = self._valid(data, self.src.dataset_mask(out_shape=shape))
        lo, hi = np.zeros(3, np.float64), np.ones(3, np.float64)
        if valid.any():
            for i in range(3):
                lo[i], hi[i] = np.percentile(data[i][valid], pct)
                if hi[i] <= lo[i]:
                    hi[i] = lo[i] + 1.0
        return lo, hi

    @staticmethod
    def _valid(data: np.ndarray, dataset_mask: np.ndarray) -> np.ndarray:
        return (dataset_mask > 0) & np.isfinite(data).all(0) & (data != 0).any(0)

    def read(self, row0: int, col0: int, h: int, w: int) -> np.ndarray:
        """(3, h, w) float32 of the selected bands at pixel offset (row0, col0); NaN = nodata,
        black or outside the image."""
        from rasterio.windows import Window

        out = np.full((3, h, w), np.nan, np.float32)
        r0, c0 = max(row0, 0), max(col0, 0)
        r1, c1 = min(row0 + h, self.src.height), min(col0 + w, self.src.width)
        if r1 <= r0 or c1 <= c0:
            return out
        win = Window(c0, r0, c1 - c0, r1 - r0)
        data = self.src.read(self.unique, window=win, out_dtype="float32")[self.pos]
        valid = self._valid(data, self.src.dataset_mask(window=win))
        data[:, ~valid] = np.nan
        out[:, r0 - row0 : r1 - row0, c0 - col0 : c1 - col0] = data
        return out

    def to_uint8(self, data: np.ndarray) -> np.ndarray:
        """(3, h, w) float with NaN -> (h, w, 3) uint8 with 0 on nodata."""
        invalid = np.isnan(data).any(0)
        if self.stretch is None:
            scaled = data
        else:
            lo, hi = self.stretch
            scaled = (data - lo[:, None, None]) * (255.0 / (hi - lo))[:, None, None]
        scaled = np.nan_to_num(np.clip(np.rint(scaled), 0, 255), nan=0.0)
        scaled[:, invalid] = 0
        return np.ascontiguousarray(np.moveaxis(scaled.astype(np.uint8), 0, -1))


def _pixel_size_m(crs, transform, lat: float | None) -> tuple[float, float]:
    rx, ry = abs(transform.a), abs(transform.e)
    if crs.is_geographic:
        deg = math.pi / 180 * EARTH_RADIUS_M
        return rx * deg * math.cos(math.radians(lat or 0.0)), ry * deg
    factor = crs.linear_units_factor[1] if crs.is_projected else 1.0
    return rx * factor, ry * factor


def _project_footprints(layers: list[_Footprints], dst_crs, bounds_in_dst) -> tuple[np.ndarray, object]:
    """The footprints near ``bounds_in_dst`` (left, bottom, right, top in dst_crs), reprojected
    to dst_crs, and an STRtree over them."""
    import shapely
    from rasterio.warp import transform, transform_bounds

    out = []
    for layer in layers:
        if layer.crs == dst_crs:
            near = layer.geoms[layer.tree.query(shapely.box(*bounds_in_dst))]
            out.append(near)
            continue
        try:
            b = transform_bounds(dst_crs, layer.crs, *bounds_in_dst, densify_pts=21)
        except Exception as e:  # noqa: BLE001
            raise PrepareError(f"{layer.source}: cannot relate its CRS to the image's: {e}") from e
        near = layer.geoms[np.sort(layer.tree.query(shapely.box(*b)))]
        if len(near) == 0:
            continue
        coords = shapely.get_coordinates(near)
        xs, ys = transform(layer.crs, dst_crs, coords[:, 0], coords[:, 1])
        moved = shapely.set_coordinates(near.copy(), np.column_stack([xs, ys]))
        out.append(moved[shapely.is_valid_input(moved) & np.isfinite(shapely.bounds(moved)).all(1)])
    geoms = np.concatenate(out) if out else np.array([], dtype=object)
    return geoms, shapely.STRtree(geoms)


def _rasterize(geoms: np.ndarray, tree, transform, shape: tuple[int, int]) -> np.ndarray:
    import shapely
    from rasterio.features import rasterize
    from rasterio.transform import array_bounds

    if len(geoms) == 0:
        return np.zeros(shape, np.uint8)
    west, south, east, north = array_bounds(shape[0], shape[1], transform)
    hits = geoms[np.sort(tree.query(shapely.box(west, south, east, north)))]
    if len(hits) == 0:
        return np.zeros(shape, np.uint8)
    return rasterize(((g, 1) for g in hits), out_shape=shape, transform=transform, fill=0, dtype="uint8")


def _margin_px(clip_m: float, pixel_size_m: tuple[float, float]) -> int:
    return int(math.ceil(clip_m / min(pixel_size_m))) + 1


def _finish_chip(
    img: _Image, data: np.ndarray, footprint_mask: np.ndarray, margin: int, size: int, px: tuple[float, float], clip_m: float
):
    """Expanded (3, S+2m, S+2m) data and footprint raster -> image, mask, sdt, nodata fraction."""
    valid = ~np.isnan(data).any(0)
    mask_full = (footprint_mask > 0) & valid
    sdt = signed_distance_m(mask_full, px, clip_m)
    crop = (slice(margin, margin + size), slice(margin, margin + size))
    nodata_fraction = 1.0 - float(valid[crop].mean())
    image = img.to_uint8(data[:, crop[0], crop[1]])
    return image, mask_full[crop].astype(np.uint8), sdt[crop], nodata_fraction


def _native_chips(img: _Image, chip_id: str, layers, cfg: PrepareConfig, writer: DatasetWriter) -> int:
    from rasterio.transform import array_bounds

    src, s = img.src, cfg.chip_size
    b = src.bounds
    lat = None
    if src.crs.is_geographic:
        lat = (b.bottom + b.top) / 2
    px = _pixel_size_m(src.crs, src.transform, lat)
    margin = _margin_px(cfg.sdt_clip_m, px)
    rows, cols = math.ceil(src.height / s), math.ceil(src.width / s)
    # Footprints near the whole (padded) chip grid, in the image's CRS.
    left, top = src.transform @ (-margin, -margin)
    right, bottom = src.transform @ (cols * s + margin, rows * s + margin)
    near = (min(left, right), min(top, bottom), max(left, right), max(top, bottom))
    geoms, tree = _project_footprints(layers, src.crs, near)
    crs_text = src.crs.to_string()
    n = 0
    for r in range(rows):
        for c in range(cols):
            n += 1
            row0, col0 = r * s - margin, c * s - margin
            size = s + 2 * margin
            data = img.read(row0, col0, size, size)
            t_exp = src.transform @ Affine.translation(col0, row0)
            fp = _rasterize(geoms, tree, t_exp, (size, size))
            t_chip = src.transform @ Affine.translation(c * s, r * s)
            chip_px = px
            if src.crs.is_geographic:  # metres per degree of longitude change with latitude
                chip_px = _pixel_size_m(src.crs, src.transform, (t_chip @ (s / 2, s / 2))[1])
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


def _tiles_chips(img: _Image, chip_id: str, layers, cfg: PrepareConfig, writer: DatasetWriter) -> int:
    import mercantile
    import shapely
    from rasterio.crs import CRS
    from rasterio.warp import Resampling, reproject, transform, transform_bounds
    from rasterio.windows import from_bounds

    src, s = img.src, cfg.chip_size
    merc = CRS.from_epsg(3857)
    # The image's outline in web mercator (densified edges), to skip tiles it does not touch.
    k = 32
    edge = np.linspace(0.0, 1.0, k, endpoint=False)
    cols_px = np.concatenate([edge, np.ones(k), 1 - edge, np.zeros(k)]) * src.width
    rows_px = np.concatenate([np.zeros(k), edge, np.ones(k), 1 - edge]) * src.height
    xs, ys = src.transform @ (cols_px, rows_px)
    mx, my = transform(src.crs, merc, list(xs), list(ys))
    outline = shapely.Polygon(np.column_stack([mx, my]))
    west, south, east, north = transform_bounds(src.crs, "EPSG:4326", *src.bounds, densify_pts=21)
    tiles = [t for t in mercantile.tiles(west, south, east, north, ZOOM)
             if outline.intersects(shapely.box(*mercantile.xy_bounds(t)))]
    if not tiles:
        return 0

    margin = max(_margin_px(cfg.sdt_clip_m, (ground_resolution_m(tile_center_lat(t.x, t.y, ZOOM)),) * 2) for t in tiles)
    size = s + 2 * margin
    mb = shapely.bounds(outline)
    pad = (margin + 1) * (mercantile.xy_bounds(tiles[0]).right - mercantile.xy_bounds(tiles[0]).left) / s
    geoms, tree = _project_footprints(layers, merc, (mb[0] - pad, mb[1] - pad, mb[2] + pad, mb[3] + pad))
    n = 0
    for t in tiles:
        n += 1
        xb = mercantile.xy_bounds(t)
        res = (xb.right - xb.left) / s
        t_exp = Affine(res, 0.0, xb.left - margin * res, 0.0, -res, xb.top + margin * res)
        exp_bounds = (xb.left - margin * res, xb.bottom - margin * res, xb.right + margin * res, xb.top + margin * res)
        sb = transform_bounds(merc, src.crs, *exp_bounds, densify_pts=21)
        win = from_bounds(*sb, transform=src.transform)
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
                    src_transform=src.transform @ Affine.translation(col0, row0),
                    src_crs=src.crs,
                    src_nodata=np.nan,
                    dst_transform=t_exp,
                    dst_crs=merc,
                    dst_nodata=np.nan,
                    resampling=Resampling.bilinear,
                    num_threads=1,
                )
        g = ground_resolution_m(tile_center_lat(t.x, t.y, ZOOM))
        fp = _rasterize(geoms, tree, t_exp, (size, size))
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
                bounds=(xb.left, xb.bottom, xb.right, xb.top),
                pixel_size_m=(g, g),
                building_area_m2=area,
                meta={"tile": [ZOOM, t.x, t.y], "nodata_fraction": round(nodata, 6)},
            )
        )
    return n


# --------------------------------------------------------------------------------------------
# The entry point


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
        layers = [_load_footprints(_localize(p, tmpdir), p) for p in footprints]
        opened: list[_Image] = []
        try:
            for p in images:
                src = _open_image(_localize(p, tmpdir), p)
                try:
                    opened.append(_Image(src, p, _select_bands(src.count, cfg.bands, p), cfg.stretch_percentiles))
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
                warnings = []
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
                            {"path": fp.source, "crs": fp.crs.to_string(), "polygons": len(fp.geoms)} for fp in layers
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


def _image_summary(img: _Image, candidates: int, written: int) -> dict:
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
