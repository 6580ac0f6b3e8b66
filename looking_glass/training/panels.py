"""Prediction panels and the progress GIF of a training job.

Per epoch, up to :data:`PANEL_CHIPS` fixed validation chips (training chips if there is no
validation set), each image | truth | prediction side by side; the frames are kept in
``checkpoints/panels/epoch-NNNN.png`` so the GIF covers resumed runs too.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from looking_glass.training.errors import log

PANEL_CHIPS = 4
GIF_FRAME_MS = 600
SDT_DISPLAY_M = 5.0  # signed distances are shown as grey 127.5 * (1 + tanh(d / this))


def _grey(values: np.ndarray, head: str) -> np.ndarray:
    if head == "binary":
        g = np.clip(values, 0.0, 1.0) * 255.0
    else:
        g = 127.5 * (1.0 + np.tanh(values / SDT_DISPLAY_M))
    return np.repeat(np.rint(g).astype(np.uint8)[..., None], 3, axis=-1)


def panel_rows(images: np.ndarray, truths: np.ndarray, preds: np.ndarray, head: str) -> np.ndarray:
    """(k, S, 3S, 3) uint8: image | truth | prediction for each chip."""
    truth_values = truths.astype(np.float32)
    return np.concatenate([images, _grey(truth_values, head), _grey(preds, head)], axis=2)


def panel_frame(rows: np.ndarray, epoch: int):
    """A PIL image of the rows stacked, headed 'epoch N'."""
    from PIL import Image, ImageDraw

    body = np.concatenate(list(rows), axis=0)
    header = 14
    frame = Image.new("RGB", (body.shape[1], body.shape[0] + header), "white")
    frame.paste(Image.fromarray(body), (0, header))
    ImageDraw.Draw(frame).text((3, 1), f"epoch {epoch}  (image | truth | prediction)", fill="black")
    return frame


def write_gif(frames_dir: Path, targets: list[Path]) -> list[Path]:
    """The frames ``frames_dir/epoch-*.png`` as a looping GIF (:data:`GIF_FRAME_MS` per frame) at
    each target; returns the targets written (a failed one is logged and skipped)."""
    from PIL import Image

    files = sorted(frames_dir.glob("epoch-*.png"))
    if not files:
        return []
    frames = [Image.open(f).convert("RGB") for f in files]
    written = []
    for target in targets:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            frames[0].save(target, save_all=True, append_images=frames[1:], duration=GIF_FRAME_MS, loop=0)
            written.append(target)
        except OSError as e:
            log(f"warning: could not write {target}: {e}")
    return written
