"""``plot`` labels each chip with its id and the IoU of its predicted mask."""

from __future__ import annotations

import numpy as np

from looking_glass.training.evaluate import chip_label, plot_examples, synthetic_eval_set


def test_chip_label_is_the_id_and_the_pixel_iou():
    truth = np.zeros((4, 4), np.uint8)
    truth[:2] = 1  # 8 pixels
    predicted = np.zeros((4, 4), bool)
    predicted[:1] = True  # 4 of them
    predicted[3, 0] = True  # and one more outside
    assert chip_label("18/1/2", predicted, truth) == "18/1/2\nIoU 0.444"  # 4 / (4 + 1 + 4)
    assert chip_label("c7", np.zeros((4, 4), bool), np.zeros((4, 4))) == "c7\nIoU 1.000"  # nothing, found nothing


def test_plot_rows_carry_the_chip_ids_and_ious(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    from looking_glass.model.segmenter import Segmenter

    segmenter = Segmenter.load("")
    images, masks, sdts, tiles = synthetic_eval_set(2, 0)
    ids = ["/".join(map(str, t)) for t in tiles]
    figures = []
    monkeypatch.setattr(plt, "close", figures.append)
    plot_examples(segmenter, images, masks, sdts, tmp_path / "fig.png", count=2, ids=ids)
    (fig,) = figures
    labels = [ax.get_ylabel() for ax in fig.axes if ax.get_ylabel()]
    predicted = segmenter.predict_masks(images[:2])
    assert labels == [chip_label(ids[i], predicted[i], masks[i]) for i in range(2)]
    assert all(label.startswith("18/") and 0 <= float(label.split("IoU ")[1]) <= 1 for label in labels)
    assert (tmp_path / "fig.png").read_bytes()[:4] == b"\x89PNG"
