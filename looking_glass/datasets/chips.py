"""The chip format: sharded training chips with a manifest, written atomically and read back.

``looking-glass prepare`` (:mod:`looking_glass.datasets.prepare`) and the synthetic-data
generator write this one format through :class:`DatasetWriter` / :func:`write_dataset`, so
training reads one format only.

Format (``out_dir``)
--------------------
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
source files, every parameter, the split rule applied in words (``split_rule``; ``split_summary``
for ``prepare``), and one entry per chip (id, source, split,
shard file and index, CRS, bounds in that CRS, pixel size in metres (x, y), building pixels,
building area in m2, nodata fraction, plus the chip's grid position: ``row``/``col`` in native
mode, ``tile`` [z, x, y] in tiles mode).

**Atomic output.** Everything is written to a hidden temporary directory beside ``out_dir`` and
renamed into place at the end; nothing is left behind on error. A non-empty ``out_dir`` is
refused unless ``overwrite=True``, and even then only when it holds a dataset of this format
(:class:`looking_glass.datasets.errors.PrepareError` otherwise).
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable

import numpy as np

from looking_glass.datasets.errors import DatasetError, PrepareError
from looking_glass.datasets.split import SPLITS
from looking_glass.grid import TILE_SIZE

__all__ = [
    "DEFAULT_SHARD_SIZE",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "Chip",
    "DatasetWriter",
    "check_out_dir",
    "is_dataset",
    "load_split",
    "move_into_place",
    "read_manifest",
    "write_dataset",
]

FORMAT_NAME = "looking-glass-chips"
FORMAT_VERSION = 1
DEFAULT_SHARD_SIZE = 256  # chips per .npz shard


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
        shard_size: int = DEFAULT_SHARD_SIZE,
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
        """Remove the temporary directory; ``out_dir`` stays as it was."""
        shutil.rmtree(self.tmp, ignore_errors=True)
        self._done = True

    def drop(self, reason: str = "nodata", n: int = 1) -> None:
        """Count ``n`` candidate chips dropped for ``reason`` (manifest ``counts.dropped_<reason>``)."""
        self.dropped[reason] = self.dropped.get(reason, 0) + n

    def add(self, chip: Chip) -> None:
        """Add one chip to its split's current shard; ValueError for a wrong split, a duplicate
        id, wrong shapes or dtypes, a mask that is not 0/1 or an sdt whose sign disagrees."""
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

    def adopt(self, part: Path, manifest: dict) -> None:
        """Move the shards of the finished dataset ``part`` (with its ``manifest``) into this one,
        after the shards already here, renumbered in order; its chips and drop counts are added.
        ValueError for a chip size that differs or a chip id already here (nothing moved)."""
        if manifest["chip_size"] != self.chip_size:
            raise ValueError(f"{part}: chip size {manifest['chip_size']} is not {self.chip_size}")
        clash = self._ids.intersection(c["id"] for c in manifest["chips"])
        if clash:
            raise ValueError(f"duplicate chip id {sorted(clash)[0]!r}")
        renamed = {}
        for split in SPLITS:
            self._flush(split)
            for shard in manifest["shards"][split]:
                name = f"{split}/shard-{len(self.shards[split]):05d}.npz"
                os.rename(part / shard["file"], self.tmp / name)
                self.shards[split].append({"file": name, "chips": shard["chips"]})
                renamed[shard["file"]] = name
        for chip in manifest["chips"]:
            self._ids.add(chip["id"])
            self._count[chip["split"]] += 1
            self._building_px[chip["split"]] += chip["building_pixels"]
            self.chips.append({**chip, "shard": renamed[chip["shard"]]})
        for key, n in manifest["counts"].items():
            if key.startswith("dropped_"):
                self.drop(key[len("dropped_"):], n)

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
        move_into_place(self.tmp, self.out_dir, self.overwrite)
        self._done = True
        return manifest


def write_dataset(
    out_dir: str | os.PathLike,
    chips: Iterable[Chip],
    *,
    chip_size: int = TILE_SIZE,
    shard_size: int = DEFAULT_SHARD_SIZE,
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


# How to make what a command wanted, said when a folder is not a prepared dataset.
MAKE_ONE = ("make one with `looking-glass prepare --images IMAGE.tif --footprints BUILDINGS.geojson --out FOLDER` "
            "(or `looking-glass synth-data --out FOLDER`)")


def read_manifest(data_dir: str | os.PathLike) -> dict:
    """The ``manifest.json`` of the prepared dataset ``data_dir``. Raises :class:`DatasetError`
    (one line, exit status 2) for no such folder, a file, a folder without manifest.json, and a
    manifest that is not valid JSON, not a ``looking-glass-chips`` one or without a chip size."""
    path = Path(data_dir).expanduser()
    manifest = path / "manifest.json"
    if not path.exists():
        raise DatasetError(f"{path}: no such folder: {MAKE_ONE}")
    if not path.is_dir():
        raise DatasetError(f"{path}: a file, not a prepared dataset folder: {MAKE_ONE}")
    if not manifest.is_file():
        raise DatasetError(f"{path}: not a prepared dataset (no manifest.json): {MAKE_ONE}")
    try:
        doc = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DatasetError(f"{manifest}: not valid JSON ({exc}): not a prepared dataset; {MAKE_ONE}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT_NAME:
        found = f"a JSON {type(doc).__name__}"
        if isinstance(doc, dict):
            found = f"format {doc['format']!r}" if "format" in doc else "no 'format' field"
        raise DatasetError(f"{manifest}: not a {FORMAT_NAME} manifest ({found}): {MAKE_ONE}")
    size = doc.get("chip_size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise DatasetError(f"{manifest}: chip_size {size!r} is not a positive whole number of pixels: {MAKE_ONE}")
    return doc


def load_split(out_dir: str | os.PathLike, split: str) -> dict[str, np.ndarray]:
    """All shards of one split concatenated: image, mask, sdt, chip_ids (for tests and small sets).
    Raises :class:`DatasetError` when ``out_dir`` is not a prepared dataset (:func:`read_manifest`)."""
    manifest = read_manifest(out_dir)  # before the shards: a missing folder is said as such
    files = sorted((Path(out_dir) / split).glob("shard-*.npz"))
    parts: dict[str, list] = {"image": [], "mask": [], "sdt": [], "chip_ids": []}
    for f in files:
        with np.load(f) as z:
            for k in parts:
                parts[k].append(z[k])
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
    """Raise PrepareError unless ``out_dir`` may receive a dataset: absent or empty, or (with
    ``overwrite``) holding a dataset of this format."""
    if out_dir.exists() and not out_dir.is_dir():
        raise PrepareError(f"{out_dir}: exists and is not a directory")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if not overwrite:
            raise PrepareError(f"{out_dir}: directory is not empty (give --overwrite to replace it)")
        if not is_dataset(out_dir):
            raise PrepareError(
                f"{out_dir}: not empty and holds no {FORMAT_NAME} manifest.json; refusing to overwrite it"
            )


def is_dataset(path: Path) -> bool:
    """Whether ``path`` holds a ``manifest.json`` of this format."""
    try:
        read_manifest(path)
    except DatasetError:
        return False
    return True


def move_into_place(tmp: Path, out_dir: Path, overwrite: bool) -> None:
    """Rename the finished ``tmp`` directory to ``out_dir``, replacing an old dataset there."""
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
