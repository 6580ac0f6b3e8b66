"""``looking-glass evaluate`` and ``plot``: how well a model finds buildings, in numbers and
pictures, on freshly generated synthetic tiles or on prepared chips.

Scores are dataset-level: pixel counts (tp, fp, fn) are summed over every tile first, then
IoU, F1, precision and recall are computed once (``looking_glass.model.metrics``).

Object scores (``object_*``) sit next to them when the tiles' places on the zoom-18 grid are
known (``--synthetic`` tiles, and chips of ``prepare --mode tiles``): the model's outputs and the
truth masks are outlined and stitched across tiles as the export does it, and buildings matched
by the SpaceNet rule at IoU >= 0.5 (:func:`looking_glass.outlines.evaluate.evaluate_tiles`).
Native-mode chips have no place on the grid; their result says so in ``object_scores``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from looking_glass.grid import ground_resolution_m, tile_center_lat
from looking_glass.model.metrics import Counts, confusion_counts, scores_from_counts
from looking_glass.runtime.atomic import atomic_output

# Evaluation tiles come from a window disjoint from the synthetic training window
# (looking_glass.datasets.synthdata) and from the demo area.
EVAL_X_RANGE = (60_000, 90_000)
EVAL_Y_RANGE = (110_000, 125_000)


def synthetic_eval_set(count: int, seed: int):
    """(images, masks, sdt, tiles) for ``count`` seeded random synthetic zoom-18 tiles; ``tiles``
    lists each tile's (z, x, y)."""
    from looking_glass.datasets.prepare import signed_distance_m
    from looking_glass.datasets.synthetic import render_tile

    rng = np.random.default_rng(seed)
    images, masks, sdts, tiles = [], [], [], []
    for _ in range(count):
        x, y = int(rng.integers(*EVAL_X_RANGE)), int(rng.integers(*EVAL_Y_RANGE))
        tiles.append((18, x, y))
        image, truth = render_tile(18, x, y)
        images.append(image)
        masks.append(truth.astype(np.uint8))
        sdts.append(signed_distance_m(truth.astype(np.uint8), ground_resolution_m(tile_center_lat(x, y, 18)), 10.0))
    return np.stack(images), np.stack(masks), np.stack(sdts), tiles


def prepared_eval_set(data_dir, split: str = "validation", with_ids: bool = False):
    """Images (N, S, S, 3) uint8, masks (N, S, S), signed distances (N, S, S, metres) and tiles
    of a prepared dataset's ``split``: ``tiles`` lists each chip's (z, x, y) from the manifest
    (tiles mode), or is None when some chip has no tile (native mode). With ``with_ids`` a fifth
    item: each chip's id (as in the manifest). Raises ``ValueError`` if the split has no chips."""
    import json
    from pathlib import Path

    from looking_glass.datasets.prepare import load_split

    data = load_split(data_dir, split)
    if len(data["image"]) == 0:
        raise ValueError(f"{data_dir} has no {split} chips (see the counts in its manifest.json; `prepare` "
                         "puts --val-fraction of them in validation)")
    manifest = json.loads((Path(data_dir) / "manifest.json").read_text())
    tile_of = {c["id"]: c.get("tile") for c in manifest.get("chips", [])}
    tiles = [tile_of.get(str(i)) for i in data["chip_ids"]]
    tiles = None if any(t is None for t in tiles) else [tuple(int(v) for v in t) for t in tiles]
    if with_ids:
        return data["image"], data["mask"], data["sdt"], tiles, [str(i) for i in data["chip_ids"]]
    return data["image"], data["mask"], data["sdt"], tiles


def evaluate(segmenter, images: np.ndarray, masks: np.ndarray, batch_size: int = 16, tiles=None) -> dict:
    """Dataset-level IoU, F1, precision and recall of ``segmenter`` on images (N, S, S, 3) and
    masks (N, S, S), from pixel counts over all of them; also the counts and the model's id.

    With ``tiles`` (each image's (z, x, y) on the zoom-18 grid) also the object scores
    ``object_tp``, ``object_fp``, ``object_fn``, ``object_precision``, ``object_recall``,
    ``object_f1``, ``object_iou_threshold`` and the building counts ``predicted_buildings`` /
    ``truth_buildings`` (see the module docstring); without, ``object_scores`` says why not."""
    from looking_glass.outlines.evaluate import OBJECT_RULE, evaluate_tiles
    from looking_glass.outlines.stitch import OutlineOptions

    total = Counts(0, 0, 0)
    outputs = []
    for i in range(0, len(images), batch_size):
        raw = segmenter.predict_raw(images[i : i + batch_size])[..., 0]
        predicted = segmenter.masks_of(raw)
        total = total + confusion_counts(predicted, masks[i : i + batch_size].astype(bool))
        if tiles is not None:
            outputs.extend(raw)
    scores = {k: float(v) for k, v in scores_from_counts(*total).items()}
    out = {**scores, "tiles": int(len(images)), "tp": int(total.tp), "fp": int(total.fp), "fn": int(total.fn)}
    if tiles is None:
        out["object_scores"] = "not computed: the chips have no zoom-18 tile (prepare --mode tiles gives them one)"
    else:
        options = OutlineOptions(head=segmenter.info.head, threshold=segmenter.info.threshold
                                 if segmenter.info.head == "binary" else None)
        objects = evaluate_tiles(zip(tiles, outputs, masks), options=options)
        out.update({f"object_{k}": objects[k] for k in ("tp", "fp", "fn", "precision", "recall", "f1")})
        out.update({"object_iou_threshold": objects["iou"], "object_rule": OBJECT_RULE,
                    "predicted_buildings": objects["predicted"], "truth_buildings": objects["truth"]})
    return {**out, "model_id": segmenter.info.model_id, "model_version": segmenter.info.version}


def chip_label(chip_id: str, predicted: np.ndarray, truth: np.ndarray) -> str:
    """``ID`` and ``IoU 0.853`` on two lines: the pixel IoU of one chip's predicted mask against
    its truth (both (S, S), nonzero = building)."""
    counts = confusion_counts(np.asarray(predicted) > 0, np.asarray(truth) > 0)
    return f"{chip_id}\nIoU {scores_from_counts(*counts)['iou']:.3f}"


def plot_examples(segmenter, images, masks, sdts, out: Path, count: int = 4, ids=None) -> None:
    """Image | truth | predicted mask | signed distance (red inside, blue outside), per row; each
    row is labelled with its chip's id (``ids``, else its index) and the pixel IoU of the
    predicted mask against the truth (an empty truth predicted empty is 1, by
    :func:`looking_glass.model.metrics.scores_from_counts`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = min(count, len(images))
    predicted = segmenter.predict_masks(images[:n])
    raw = segmenter.predict_raw(images[:n])[..., 0]  # whichever runtime runs (docs/inference.md)
    fig, axes = plt.subplots(n, 4, figsize=(12, 3 * n), squeeze=False)
    sdt_is_prediction = segmenter.info.head == "sdt"
    titles = ["image", "truth", "predicted mask", "predicted SDT (m)" if sdt_is_prediction else "truth SDT (m)"]
    for row in range(n):
        sdt = raw[row] if sdt_is_prediction else sdts[row]
        limit = float(np.abs(sdt).max()) or 1.0
        panels = [images[row], masks[row], predicted[row], sdt]
        label = chip_label(ids[row] if ids is not None else f"#{row}", predicted[row], masks[row])
        axes[row][0].set_ylabel(label, fontsize=10, rotation=0, ha="right", va="center")
        for col, panel in enumerate(panels):
            ax = axes[row][col]
            if col == 3:
                im = ax.imshow(panel, cmap="RdBu_r", vmin=-limit, vmax=limit)
                fig.colorbar(im, ax=ax, fraction=0.046)
            else:
                ax.imshow(panel, cmap=None if col == 0 else "gray", vmin=None if col == 0 else 0, vmax=None if col == 0 else 1)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(titles[col])
    fig.suptitle(f"{segmenter.info.model_id} v{segmenter.info.version}")
    fig.tight_layout()
    with atomic_output(out) as tmp:  # as every output file: missing folders made, no partial file
        fig.savefig(tmp, dpi=90, format=Path(out).suffix.lstrip(".") or "png")
    plt.close(fig)
