"""Training data: the channels' chips in memory and the batches the model is fitted on.

Each channel is either a prepared dataset (``manifest.json`` plus ``train/`` and ``validation/``
shard folders, see :mod:`looking_glass.datasets.prepare`), of which the ``train`` channel uses
the ``train`` split and the ``validation`` channel the ``validation`` split, or a folder holding
``shard-*.npz`` files directly. Chips are held in memory (image uint8 and the head's target only).

Each epoch is ``floor(samples / batch_size)`` batches (at least 1) of a fresh permutation, where
``samples`` is ``samples_per_epoch`` or the number of train chips (a permutation repeated as
often as needed); the order, the crops and the augmentation
(:func:`looking_glass.training.augment.augment_batch`) are functions of (seed, epoch, batch), so
a resumed run sees the batches an uninterrupted one would have seen.

With ``random_crops`` a sample is a window of the chip size at a random offset over the mosaic
of a chip and its right, lower and lower-right neighbours (chips are neighbours by their ids:
``<image>_<zoom>_<x>_<y>`` tiles or ``<image>_rRRR_cCCC`` native chips); offsets that would need
a missing neighbour are not drawn, so a chip without neighbours is sampled whole.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from looking_glass.training.augment import augment_batch
from looking_glass.training.errors import HyperparameterError, TrainingError, log
from looking_glass.training.layout import Paths


@dataclass
class Source:
    """Where a channel's chips come from."""

    channel: str
    path: Path
    kind: str  # "dataset" (manifest.json) or "shards"
    shards: list[Path]
    manifest: dict | None = None

    def summary(self) -> dict:
        """What the sidecar records of this source (JSON-able)."""
        out = {"channel": self.channel, "path": str(self.path), "kind": self.kind, "shards": len(self.shards)}
        resolved = self.path.resolve()
        if resolved != self.path.absolute():  # a local run's channel links to the folder given to train --local
            out["resolved_path"] = str(resolved)
        if self.manifest is not None:
            m = self.manifest
            out["manifest"] = {k: m.get(k) for k in ("format", "format_version", "created", "mode", "chip_size",
                                                     "counts", "class_balance", "split_rule", "seed")
                               if k in m}
        return out


def resolve_channel(path: Path, channel: str, split: str, required: bool) -> Source | None:
    """The shards of one channel: a prepared dataset's ``split`` or shard files directly.

    ``None`` for an optional channel that is missing or empty. Raises :class:`TrainingError`
    for a missing required channel, a file, an unreadable manifest or a folder of other files.
    """
    if not path.exists():
        if required:
            raise TrainingError(f"the {channel} channel {path} does not exist (it is required)")
        return None
    if not path.is_dir():
        raise TrainingError(f"the {channel} channel {path} is not a directory")
    manifest_path = path / "manifest.json"
    if manifest_path.exists():
        try:
            manifest = json.loads(manifest_path.read_text())
        except ValueError as e:
            raise TrainingError(f"{manifest_path}: not valid JSON: {e}") from None
        return Source(channel, path, "dataset", sorted((path / split).glob("shard-*.npz")), manifest)
    shards = sorted(path.glob("shard-*.npz"))
    if shards:
        return Source(channel, path, "shards", shards)
    if not required and not any(path.iterdir()):
        return None  # an empty channel folder: as if not given
    listing = sorted(p.name for p in path.iterdir())[:10]
    raise TrainingError(
        f"the {channel} channel {path} holds neither manifest.json (a prepared dataset) nor shard-*.npz files "
        f"(it holds {listing})"
    )


@dataclass
class Chips:
    """The chips of one channel, in memory."""

    images: np.ndarray  # (N, S, S, 3) uint8
    targets: np.ndarray  # (N, S, S) uint8 mask (binary head) or float32 signed distance (sdt head)
    ids: np.ndarray
    source: Source
    total: int = 0  # chips in the source before max_train_chips
    _neighbours: np.ndarray | None = None

    @property
    def neighbours(self) -> np.ndarray:
        """(N, 3) indices of each chip's right, lower and lower-right neighbour (-1: none)."""
        if self._neighbours is None:
            self._neighbours = chip_neighbours(self.ids)
        return self._neighbours

    @property
    def size(self) -> int:
        """Chip side in pixels."""
        return int(self.images.shape[1])

    def summary(self) -> dict:
        """What the sidecar records of these chips (JSON-able)."""
        return {"chips": int(len(self.images)), "available": int(self.total), "chip_size": self.size,
                **self.source.summary()}


def load_chips(src: Source, head: str, limit: int | None = None, seed: int = 0) -> Chips:
    """All chips of ``src`` in memory: images and the target for ``head``.

    ``head`` is ``"binary"`` (the uint8 ``mask``) or ``"sdt"`` (the float32 signed distance in
    metres); with ``limit`` below the count, a random subset seeded by ``seed`` (in shard order).
    Raises :class:`TrainingError` for an unreadable shard or unexpected shapes.
    """
    key = "mask" if head == "binary" else "sdt"
    images, targets, ids = [], [], []
    for f in src.shards:
        try:
            with np.load(f) as z:
                images.append(z["image"])
                targets.append(z[key])
                n = len(z["image"])
                ids.append(z["chip_ids"] if "chip_ids" in z else np.array([f"{f.stem}:{i}" for i in range(n)]))
        except (OSError, ValueError, KeyError) as e:
            raise TrainingError(f"{f}: not a readable chip shard ({type(e).__name__}: {e})") from None
    if not images:
        return Chips(np.zeros((0, 0, 0, 3), np.uint8), np.zeros((0, 0, 0)), np.array([], str), src, 0)
    image, target, chip_ids = np.concatenate(images), np.concatenate(targets), np.concatenate(ids)
    if image.ndim != 4 or image.shape[-1] != 3 or image.shape[1] != image.shape[2] or target.shape != image.shape[:3]:
        raise TrainingError(f"{src.channel} chips have unexpected shapes: image {image.shape}, {key} {target.shape}")
    total = len(image)
    if limit is not None and limit < total:
        keep = np.sort(np.random.default_rng([seed, 1]).choice(total, size=limit, replace=False))
        image, target, chip_ids = image[keep], target[keep], chip_ids[keep]
    return Chips(image, target, chip_ids, src, total)


def check_chip_size(chips: Chips, input_size: int) -> None:
    """Raises :class:`HyperparameterError` if the chips are not ``input_size`` pixels square."""
    if len(chips.images) and chips.size != input_size:
        raise HyperparameterError(
            f"hyperparameter 'input_size' is {input_size} but the {chips.source.channel} chips are "
            f"{chips.size} px; set input_size to {chips.size}"
        )


def load_data(paths: Paths, hp: dict) -> tuple[Chips, Chips | None]:
    """The train chips and the validation chips (``None`` without a validation channel or
    without validation chips), each checked against ``input_size``; logs what it found."""
    head, size = hp["config"].head, hp["config"].input_size
    train_src = resolve_channel(paths.train, "train", "train", required=True)
    val_src = resolve_channel(paths.validation, "validation", "validation", required=False)
    train = load_chips(train_src, head, hp["max_train_chips"], hp["seed"])
    if not len(train.images):
        raise TrainingError(f"the train channel {paths.train} has no train chips")
    check_chip_size(train, size)
    val = None
    if val_src is None:
        log(f"no validation channel ({paths.validation}): training without validation metrics")
    else:
        val = load_chips(val_src, head)
        if not len(val.images):
            log(f"the validation channel {paths.validation} has no validation chips: training without validation metrics")
            val = None
        else:
            check_chip_size(val, size)
    log(f"data: {len(train.images)} train chips ({train.source.kind} {train.source.path}), "
        f"{0 if val is None else len(val.images)} validation chips, {train.size} px")
    return train, val


TILE_ID = re.compile(r"^(?P<image>.*)_(?P<zoom>\d+)_(?P<x>\d+)_(?P<y>\d+)$")
NATIVE_ID = re.compile(r"^(?P<image>.*)_r(?P<row>\d+)_c(?P<col>\d+)$")


def chip_position(chip_id: str) -> tuple[str, int, int] | None:
    """(image key, row, column) of a chip on its image's grid, from its id; ``None`` if unknown."""
    m = TILE_ID.match(chip_id)
    if m:
        return f"{m['image']}/{m['zoom']}", int(m["y"]), int(m["x"])
    m = NATIVE_ID.match(chip_id)
    if m:
        return m["image"], int(m["row"]), int(m["col"])
    return None


def chip_neighbours(ids) -> np.ndarray:
    """(N, 3) indices of the right, lower and lower-right neighbour of each chip (-1: none)."""
    where = {}
    positions = [chip_position(str(i)) for i in ids]
    for n, pos in enumerate(positions):
        if pos is not None:
            where.setdefault(pos, n)
    out = np.full((len(positions), 3), -1, np.int64)
    for n, pos in enumerate(positions):
        if pos is None:
            continue
        key, r, c = pos
        for k, (dr, dc) in enumerate(((0, 1), (1, 0), (1, 1))):
            out[n, k] = where.get((key, r + dr, c + dc), -1)
    return out


def random_crop(chips: Chips, n: int, rng: np.random.Generator):
    """(image, target) of one random chip-sized window whose top-left lies in chip ``n``."""
    s = chips.size
    right, down, diag = (int(v) for v in chips.neighbours[n])
    dy = int(rng.integers(s)) if down >= 0 else 0
    dx = int(rng.integers(s)) if right >= 0 else 0
    if dy and dx and diag < 0:  # the lower-right quarter is missing: keep one offset
        if rng.random() < 0.5:
            dy = 0
        else:
            dx = 0
    if not dy and not dx:
        return chips.images[n], chips.targets[n]
    parts = [[n, right if dx else -1], [down if dy else -1, diag if dx and dy else -1]]

    def mosaic(arrays):
        rows = []
        for row in parts[: 2 if dy else 1]:
            cols = [arrays[i] for i in row[: 2 if dx else 1]]
            rows.append(np.concatenate(cols, axis=1))
        big = np.concatenate(rows, axis=0)
        return big[dy:dy + s, dx:dx + s]

    return mosaic(chips.images), mosaic(chips.targets)


def samples_per_epoch(chips: Chips, hp: dict) -> int:
    """Samples drawn per epoch: ``samples_per_epoch`` or the number of train chips."""
    return hp.get("samples_per_epoch") or len(chips.images)


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Batches per epoch: ``n // batch_size``, at least 1."""
    return max(1, n // batch_size)


def epoch_batch(chips: Chips, hp: dict, epoch: int, batch: int):
    """Batch ``batch`` of ``epoch``: a pure function of (seed, epoch, batch).

    Returns float32 images (B, S, S, 3) in 0..255 and targets (B, S, S, 1) in the head's units,
    B = min(batch_size, chips).
    """
    n = len(chips.images)
    samples = samples_per_epoch(chips, hp)
    if samples == n and not hp.get("random_crops"):  # the original order (runs before samples_per_epoch)
        bs = min(hp["batch_size"], n)
        order = np.random.default_rng([hp["seed"], epoch]).permutation(n)
        idx = np.sort(order[batch * bs:(batch + 1) * bs])
        images, targets = chips.images[idx], chips.targets[idx]
    else:
        bs = min(hp["batch_size"], samples)
        rng = np.random.default_rng([hp["seed"], epoch])
        repeats = -(-samples // n)
        order = np.concatenate([rng.permutation(n) for _ in range(repeats)])
        idx = order[batch * bs:(batch + 1) * bs]
        if hp.get("random_crops"):
            crop_rng = np.random.default_rng([hp["seed"], epoch, batch, 11])
            pairs = [random_crop(chips, int(i), crop_rng) for i in idx]
            images, targets = np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
        else:
            images, targets = chips.images[idx], chips.targets[idx]
    if hp["augment"]:
        images, targets = augment_batch(images, targets, np.random.default_rng([hp["seed"], epoch, batch, 7]),
                                        mode=hp.get("augment_mode"))
    return images.astype(np.float32), targets.astype(np.float32)[..., None]


def make_dataset(chips: Chips, hp: dict, initial_epoch: int):
    """(An endless keras PyDataset, steps per epoch); item i is batch i % steps of epoch
    initial_epoch + i // steps (Keras draws items in order when steps_per_epoch is given)."""
    import keras

    steps = steps_per_epoch(samples_per_epoch(chips, hp), hp["batch_size"])

    class ChipBatches(keras.utils.PyDataset):
        def __init__(self):
            super().__init__(workers=1, use_multiprocessing=False)

        @property
        def num_batches(self):
            return None  # endless: fit(steps_per_epoch=...) cuts it into epochs

        def __getitem__(self, i):
            epoch, batch = divmod(int(i), steps)
            return epoch_batch(chips, hp, initial_epoch + epoch, batch)

    return ChipBatches(), steps
