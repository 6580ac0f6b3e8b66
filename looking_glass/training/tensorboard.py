"""TensorBoard events of a training job without the ``tensorboard`` package.

``keras.callbacks.TensorBoard`` and ``tf.summary.scalar``/``image`` need the tensorboard
package, which TensorFlow 2.21 no longer installs; without it the same events (same tags, plugin
metadata and layout) are written with TensorFlow's own ``tf.summary.write`` and the plugins'
metadata. Image summaries are always written this way.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def tensorboard_installed() -> bool:
    """Whether the ``tensorboard`` package (and so Keras' TensorBoard callback) is importable."""
    try:
        from tensorboard.summary import v2  # noqa: F401
    except ImportError:
        return False
    return True


def _plugin_metadata(plugin: str):
    from tensorflow.core.framework import summary_pb2

    meta = summary_pb2.SummaryMetadata()
    meta.plugin_data.plugin_name = plugin  # "scalars" / "images"; empty content = version 0
    return meta


_WRITERS: dict = {}


def _writer(path: Path):
    import tensorflow as tf

    key = str(path)
    if key not in _WRITERS:
        _WRITERS[key] = tf.summary.create_file_writer(key)
    return _WRITERS[key]


def write_epoch_scalars(log_dir: Path, epoch: int, logs: dict) -> None:
    """epoch_<name> scalars, val_* under validation/ and the rest under train/ (as Keras does)."""
    import tensorflow as tf

    for split, items in (("train", {k: v for k, v in logs.items() if not k.startswith("val_")}),
                         ("validation", {k[4:]: v for k, v in logs.items() if k.startswith("val_")})):
        writer = _writer(log_dir / split)
        with writer.as_default():
            for name, value in items.items():
                if isinstance(value, (int, float, np.floating, np.integer)):
                    tf.summary.write(f"epoch_{name}", tf.constant(float(value), tf.float32), step=epoch,
                                     metadata=_plugin_metadata("scalars"))
        writer.flush()


def write_image_summary(log_dir: Path, tag: str, images: np.ndarray, step: int) -> None:
    """An image summary (up to len(images) images, uint8 (k, H, W, 3)) in the images plugin's
    format: a string tensor [width, height, png, png, ...]."""
    import tensorflow as tf

    pngs = [tf.io.encode_png(img) for img in images]
    h, w = images.shape[1:3]
    tensor = tf.stack([tf.constant(str(w)), tf.constant(str(h)), *pngs])
    writer = _writer(log_dir)
    with writer.as_default():
        tf.summary.write(tag, tensor, step=step, metadata=_plugin_metadata("images"))
    writer.flush()
