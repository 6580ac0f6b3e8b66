"""One training job from its inputs to the saved model: :class:`Run` and :func:`run`.

The job reads the hyperparameters and the chips, builds (or resumes from a checkpoint) the
model, fits it epoch by epoch (validation, the metric line, prediction panels and a checkpoint
after each), and saves ``model/model.keras`` with its sidecar ``model.json`` in the format of
:mod:`looking_glass.model.segmenter` plus a ``training`` record, a SavedModel export, the
progress GIF and ``model/model.onnx`` (checked, its record in the sidecar). A stop flag set by
a signal ends it early with a checkpoint (see
:mod:`looking_glass.training.entrypoint`).

Fine-tuning (:mod:`looking_glass.training.init`): with a model in the ``init`` channel the job
starts from its architecture and weights, the encoder frozen for ``freeze_epochs``; with
validation chips it keeps the weights of the best ``val_iou`` epoch (``restore_best``) and stops
after ``patience`` epochs without a better one. The sidecar records the starting model as
``parent``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np

from looking_glass.training.callbacks import make_callbacks
from looking_glass.training.checkpoints import read_state, restore_optimizer, save_checkpoint
from looking_glass.training.data import Chips, load_data, make_dataset
from looking_glass.training.errors import HyperparameterError, Interrupted, TrainingError, log
from looking_glass.training.hyperparameters import (
    parse_hyperparameters,
    public_hyperparameters,
    read_hyperparameters,
)
from looking_glass.training.init import InitModel, load_init_model, read_init
from looking_glass.training.layout import Paths
from looking_glass.training.loop import (
    StopFlag,
    compile_model,
    metric_line,
    predict,
    set_encoder_frozen,
    validate,
)
from looking_glass.training.panels import PANEL_CHIPS, panel_frame, panel_rows, write_gif
from looking_glass.training.tensorboard import write_image_summary

__all__ = ["HyperparameterError", "Interrupted", "Run", "TrainingError", "run"]


@dataclass
class Run:
    """The state of one training job: its inputs, the model, and the epochs done so far.

    ``completed`` counts finished epochs (resumed ones included), ``history`` holds one record
    per epoch (loss, seconds and the validation metrics), ``batches_since_epoch`` the batches of
    the epoch in progress (to tell an interrupted epoch from a finished one).
    """

    paths: Paths
    hp: dict
    stop: StopFlag
    train: Chips
    val: Chips | None
    model: object = None
    steps: int = 0
    history: list = field(default_factory=list)
    completed: int = 0
    previous_seconds: float = 0.0
    resumes: list = field(default_factory=list)
    started: float = field(default_factory=time.time)
    epoch_started: float = 0.0
    batches_since_epoch: int = 0
    panel_chips: tuple | None = None
    init: InitModel | None = None
    best: dict | None = None  # {"epoch", "val_iou"} of the best epoch so far
    best_weights: list | None = None
    stopped_early: int = 0  # the epoch after which early stopping ended the run (0: it did not)

    @property
    def best_weights_path(self):
        """Where the best epoch's weights are saved (``restore_best``): ``checkpoints/best.weights.h5``."""
        return self.paths.checkpoints / "best.weights.h5"

    # -- per epoch ----------------------------------------------------------------------------

    def finish_epoch(self, epoch: int, logs: dict | None) -> None:
        """After epoch ``epoch`` (0-based): validate, log the metric line, draw panels, checkpoint."""
        logs = logs if logs is not None else {}
        val = validate(self.model, self.val, self.hp, self.stop) if self.val is not None else None
        if val:
            logs.update({k: v for k, v in val.items() if k != "val_counts"})
        loss = float(logs.get("loss", float("nan")))
        seconds = time.time() - self.epoch_started
        log(metric_line(epoch + 1, loss, val, seconds))
        if self.val is not None and val is None:
            log(f"epoch {epoch + 1}: validation skipped (signal received)")
        record = {"epoch": epoch + 1, "loss": loss, "seconds": round(seconds, 2)}
        if val:
            record.update(val)
        self.history.append(record)
        self.completed = epoch + 1
        if val and (self.best is None or val["val_iou"] > self.best["val_iou"]):
            self.best = {"epoch": self.completed, "val_iou": float(val["val_iou"])}
            if self.hp["restore_best"]:
                self.best_weights = self.model.get_weights()
                self.paths.checkpoints.mkdir(parents=True, exist_ok=True)
                self.model.save_weights(self.best_weights_path)
        if not self.stop.signum:
            self.write_panels(epoch)
        patience = self.hp["patience"]
        if (patience and self.best is not None and self.completed - self.best["epoch"] >= patience
                and self.completed < self.hp["epochs"]):
            self.stopped_early = self.completed
            log(f"early stopping after epoch {self.completed}: no better val_iou than {self.best['val_iou']:.6f} "
                f"(epoch {self.best['epoch']}) for {patience} epochs")
            self.model.stop_training = True
        self.checkpoint(f"epoch-{self.completed:04d}")
        if self.stop.signum:
            self.model.stop_training = True

    def state(self) -> dict:
        """The checkpoint's record of this run (JSON-able)."""
        return {
            "completed_epochs": self.completed,
            "history": self.history,
            "config": self.hp["config"].to_dict(),
            "hyperparameters": public_hyperparameters(self.hp),
            "train_seconds": round(self.previous_seconds + time.time() - self.started, 1),
            "resumes": self.resumes,
            "best": self.best,
            "stopped_early": self.stopped_early,
        }

    def checkpoint(self, name: str) -> None:
        """Save checkpoint ``name`` of the current weights and optimizer state."""
        save_checkpoint(self.model, self.paths, self.state(), name)

    def write_panels(self, epoch: int) -> None:
        """The prediction panels of epoch ``epoch`` (0-based): TensorBoard image and GIF frame."""
        images, truths = self.panel_chips
        preds = predict(self.model, images, self.hp["batch_size"])
        rows = panel_rows(images, truths, preds, self.hp["config"].head)
        write_image_summary(self.paths.tensorboard / "predictions", "image_truth_prediction", rows, epoch)
        frames = self.paths.checkpoints / "panels"
        frames.mkdir(parents=True, exist_ok=True)
        panel_frame(rows, epoch + 1).save(frames / f"epoch-{epoch + 1:04d}.png")

    # -- setup --------------------------------------------------------------------------------

    def setup_model(self) -> None:
        """Build and compile a new model, or resume the checkpointed one (weights and Adam state).

        Raises :class:`TrainingError` if the checkpoint is of another model.
        """
        import keras

        from looking_glass.model.deeplab import build_deeplabv3plus

        hp, cfg = self.hp, self.hp["config"]
        keras.utils.set_random_seed(hp["seed"])
        state = read_state(self.paths)
        if state is None:
            if self.init is not None:
                self.model = load_init_model(self.init, cfg)
                compile_model(self.model, hp, frozen=hp["freeze_epochs"] > 0)
                log(f"model {self.model.name}: {self.model.count_params():,} parameters, fine-tuning "
                    f"{self.init.sidecar.get('model_id')} version {self.init.sidecar.get('version')} ({self.init.path})")
                return
            self.model = build_deeplabv3plus(cfg)
            compile_model(self.model, hp, frozen=hp["freeze_epochs"] > 0)
            log(f"model {self.model.name}: {self.model.count_params():,} parameters, new")
            return
        saved, wanted = state.get("config") or {}, cfg.to_dict()
        differ = {k: (saved.get(k), v) for k, v in wanted.items() if k != "imagenet" and saved.get(k) != v}
        if differ:  # (imagenet only chooses the initial weights: it may differ)
            listed = ", ".join(f"{k}: checkpoint {a!r}, hyperparameters {b!r}" for k, (a, b) in differ.items())
            raise TrainingError(
                f"the checkpoint in {self.paths.checkpoints} is of another model ({listed}); use the same model "
                "hyperparameters or remove the checkpoints"
            )
        self.model = keras.saving.load_model(self.paths.checkpoints / state["model"], compile=False)
        self.completed = int(state["completed_epochs"])
        compile_model(self.model, hp, frozen=self.completed < hp["freeze_epochs"])
        note = restore_optimizer(self.model, self.paths.checkpoints / state["optimizer"])
        self.best = state.get("best")
        self.stopped_early = int(state.get("stopped_early") or 0)
        if self.best is not None and hp["restore_best"] and self.best_weights_path.exists():
            current = self.model.get_weights()
            self.model.load_weights(self.best_weights_path)
            self.best_weights = self.model.get_weights()
            self.model.set_weights(current)
        self.history = list(state.get("history", []))
        self.previous_seconds = float(state.get("train_seconds", 0.0))
        self.resumes = [*state.get("resumes", []), self.completed]
        log(f"resuming from checkpoint {state['model']}: initial epoch {self.completed} "
            f"({self.completed} completed); {note}")

    def setup_panels(self) -> None:
        """Pick the fixed chips of the prediction panels (validation chips if any)."""
        chips = self.val if self.val is not None else self.train
        n = min(PANEL_CHIPS, len(chips.images))
        idx = np.unique(np.linspace(0, len(chips.images) - 1, n).round().astype(int))
        self.panel_chips = (chips.images[idx], chips.targets[idx])
        if self.val is None:
            log("prediction panels use training chips (no validation set)")

    # -- train and finish ---------------------------------------------------------------------

    def train_epochs(self) -> None:
        """Fit the remaining epochs (none if the checkpoint has them all)."""
        hp = self.hp
        epochs, freeze = hp["epochs"], hp["freeze_epochs"]
        if self.completed >= epochs or self.stopped_early:
            log(f"the checkpoint has {self.completed} epochs (epochs={epochs}"
                f"{', stopped early' if self.stopped_early else ''}): nothing left to train")
            return
        if self.val is None and (hp["patience"] or hp["restore_best"]):
            log("no validation chips: no early stopping, and the last epoch's weights are the model")
        if self.completed < freeze:
            self.fit(freeze, f"encoder frozen, learning rate {hp['learning_rate']:g}")
            if self.stop.signum or self.stopped_early:
                return
            set_encoder_frozen(self.model, False)
            compile_model(self.model, hp)
        self.fit(epochs, f"learning rate {hp['learning_rate']:g}, {hp['lr_schedule']}")

    def fit(self, until: int, what: str) -> None:
        """Fit epochs ``completed + 1 .. until`` (1-based)."""
        dataset, self.steps = make_dataset(self.train, self.hp, self.completed)
        callbacks = make_callbacks(self)
        batch = min(self.hp["batch_size"], self.hp.get("samples_per_epoch") or len(self.train.images))
        log(f"training started: epochs {self.completed + 1}..{until} ({what}), {self.steps} batches of "
            f"{batch} per epoch")
        self.model.fit(dataset, epochs=until, initial_epoch=self.completed, steps_per_epoch=self.steps, shuffle=False,
                       callbacks=callbacks, verbose=0)

    def save_interrupted(self) -> None:
        """After a signal: checkpoint the weights if the last epoch was left unfinished."""
        if self.batches_since_epoch and self.batches_since_epoch < self.steps:
            epoch = self.completed + 1
            name = f"interrupted-epoch-{epoch:04d}-batch-{self.batches_since_epoch:05d}"
            self.checkpoint(name)
            log(f"received {signal.Signals(self.stop.signum).name}: stopped in epoch {epoch} after "
                f"{self.batches_since_epoch} of {self.steps} batches; checkpoint {name} saved "
                f"({self.completed} completed epochs; epoch {epoch} is re-run on resume)")
        else:
            log(f"received {signal.Signals(self.stop.signum).name}: stopped after epoch {self.completed}; "
                f"checkpoint epoch-{self.completed:04d} saved")

    def save_model(self) -> None:
        """``model/model.keras`` with its sidecar, the SavedModel export and the progress GIF."""
        import keras
        import tensorflow as tf

        hp, cfg = self.hp, self.hp["config"]
        out = self.paths.model
        out.mkdir(parents=True, exist_ok=True)
        kept = None
        if hp["restore_best"] and self.best is not None and self.best_weights is not None:
            self.model.set_weights(self.best_weights)
            kept = self.best["epoch"]
            log(kept_epoch_line(kept, self.best["val_iou"], self.completed))
        set_encoder_frozen(self.model, False)
        plain = keras.Model(self.model.input, self.model.output, name=self.model.name)
        plain.save(out / "model.keras")
        last_val = next((h for h in reversed(self.history) if "val_iou" in h and (kept is None or h["epoch"] == kept)),
                        None)
        meta = {
            "model_id": hp["model_id"],
            "version": hp["version"] or os.environ.get("TRAINING_JOB_NAME")
            or datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ"),
            "trained": True,
            "description": hp["description"] or self.description(),
            "threshold": hp["threshold"],
            "config": cfg.to_dict(),
            "training": {
                "entry_point": "python -m training.train",
                "job": os.environ.get("TRAINING_JOB_NAME"),
                "hyperparameters": public_hyperparameters(hp),
                "optimizer": f"Adam, learning rate {hp['learning_rate']}"
                + ("" if hp["lr_schedule"] == "constant" else f", {hp['lr_schedule']} decay to x{hp['min_lr_ratio']}")
                + (f", encoder frozen for {hp['freeze_epochs']} epochs" if hp["freeze_epochs"] else ""),
                "loss": ({"bce": "weighted BCE", "bce_dice": "weighted BCE + soft Dice", "lovasz": "Lovasz hinge"}[hp["loss"]]
                         + (f" (pos_weight {hp['pos_weight']})" if hp["loss"] != "lovasz" else "")) if cfg.head == "binary"
                else f"Huber on the signed distance (delta {hp['huber_delta']} m)",
                "augmentation": self.augmentation(),
                "best_epoch": None if self.best is None else self.best["epoch"],
                "model_epoch": kept or self.completed,
                "stopped_early_after_epoch": self.stopped_early or None,
                "data": {"train": self.train.summary(), "validation": self.val.summary() if self.val is not None else None},
                "epochs_completed": self.completed,
                "resumed_at_epochs": self.resumes,
                "metrics": self.history,
                "elapsed_seconds": round(self.previous_seconds + time.time() - self.started, 1),
                "keras": keras.__version__,
                "tensorflow": tf.__version__,
                "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            },
            "validation": None if last_val is None else {
                k: last_val[k] for k in ("epoch", "val_loss", "val_mse", "val_iou", "val_f1", "val_precision", "val_recall")
                if k in last_val
            },
        }
        if self.init is not None:
            meta["parent"] = self.init.parent(hp["init_source"])
        (out / "model.json").write_text(json.dumps(meta, indent=2) + "\n")
        log(f"saved {out / 'model.keras'} and {out / 'model.json'}")
        self.export(plain)
        self.export_onnx(plain)
        targets = [out / "progress.gif", self.paths.output_data / "progress.gif"]
        gifs = write_gif(self.paths.checkpoints / "panels", targets)
        if gifs:
            log("progress GIF: " + ", ".join(str(g) for g in gifs))

    def export(self, plain) -> None:
        """``model/export``: a TensorFlow SavedModel of ``plain`` (a failure is only a warning)."""
        target = self.paths.model / "export"
        try:
            if target.exists():
                shutil.rmtree(target)
            plain.export(str(target), verbose=False)
            log(f"exported a TensorFlow SavedModel to {target}")
        except Exception as e:  # noqa: BLE001 -- the .keras model is the product; the export is extra
            log(f"warning: SavedModel export failed ({type(e).__name__}: {e}); continuing without {target}")

    def export_onnx(self, plain) -> None:
        """``model/model.onnx``, checked against ``plain`` (:mod:`looking_glass.model.onnx_export`;
        a failure is only a warning: the segmenter then runs the .keras model)."""
        try:
            from looking_glass.model.onnx_export import export_onnx

            record = export_onnx(self.paths.model / "model.keras", model=plain)
            check = record["check"]
            log(f"exported ONNX to {self.paths.model / record['file']} (max |diff| {check['max_abs_diff']:.2g}, "
                f"mask agreement {check['mask_agreement']:.6f})")
        except Exception as e:  # noqa: BLE001 -- the .keras model is the product; the export is extra
            log(f"warning: ONNX export failed ({type(e).__name__}: {e}); the model runs with Keras")

    def augmentation(self) -> str:
        """The sidecar's account of the augmentation."""
        if not self.hp["augment"]:
            what = "none"
        else:
            from looking_glass.training.augment import augment_mode

            what = {"full": "rotations, flips, zoom, photometric changes and no-data wedges",
                    "photometric": "rotations, flips and photometric changes",
                    "geometric": "random 90-degree rotations and horizontal flips",
                    "none": "none"}[augment_mode(self.hp["augment_mode"])]
        return what + ("; random crops over neighbouring chips" if self.hp["random_crops"] else "")

    def description(self) -> str:
        """The sidecar's generated description."""
        cfg = self.hp["config"]
        width = f" x{cfg.alpha:g}" if cfg.backbone == "mobilenetv2" else ""
        head = "building probability" if cfg.head == "binary" else "signed distance"
        how = "trained" if self.init is None else (f"fine-tuned from {self.init.sidecar.get('model_id')} "
                                                   f"version {self.init.sidecar.get('version')}")
        return (f"DeepLab V3+ ({cfg.backbone}{width}, OS {cfg.output_stride}, {head} head) {how} "
                f"{self.completed} epochs on {len(self.train.images)} chips from {self.train.source.path}")


def kept_epoch_line(kept: int, val_iou: float, last: int) -> str:
    """The log line saying which epoch's weights the saved model has: ``kept`` (the best epoch,
    1-based, by ``val_iou``) out of ``last`` completed epochs; it says "not the last epoch's"
    only when the best epoch is an earlier one."""
    if kept == last:
        return f"the model is epoch {kept}'s, the last and best (val_iou {val_iou:.6f})"
    return f"the model is epoch {kept}'s (best val_iou {val_iou:.6f}), not the last epoch's (epoch {last})"


def run(paths: Paths, stop: StopFlag) -> int:
    """Run the training job laid out at ``paths``; returns 0, or 128 + the signal number after a
    signal during training (a checkpoint saved).

    Raises :class:`HyperparameterError` (bad hyperparameters, chips not ``input_size``),
    :class:`TrainingError` (bad channels or checkpoints), :class:`Interrupted` (a signal before
    training started) and whatever else fails.
    """
    init = read_init(paths.init) if paths.init is not None else None
    raw = read_hyperparameters(paths.hyperparameters)
    hp = parse_hyperparameters(raw, init_config=None if init is None else init.config)
    if init is not None:
        log(f"fine-tuning {init.path}: {init.sidecar.get('model_id')} version {init.sidecar.get('version')}; its "
            "config sets the model hyperparameters")
        if hp.get("overridden"):
            log(f"hyperparameters {hp['overridden']} are the init model's, not the values given")
        note = init.threshold_note(hp, given="threshold" in raw)
        if note:  # said once: the fine-tuned sidecar's threshold would otherwise differ silently
            log(note)
        if "model_id" not in raw:
            parent_id = str(init.sidecar.get("model_id") or hp["model_id"])
            hp["model_id"] = parent_id if parent_id.endswith("-finetuned") else f"{parent_id}-finetuned"
    log("hyperparameters: " + json.dumps(public_hyperparameters(hp), sort_keys=True))
    try:
        train, val = load_data(paths, hp)
    except HyperparameterError as e:
        if init is None or "input_size" not in str(e):
            raise
        raise TrainingError(f"the init model {init.path} takes {hp['config'].input_size} px chips, but the data's "
                            f"differ ({e}): prepare chips of its size") from None
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    job = Run(paths=paths, hp=hp, stop=stop, train=train, val=val, init=init)
    if stop.signum:
        raise Interrupted
    job.setup_model()
    job.setup_panels()
    if stop.signum:
        raise Interrupted
    job.train_epochs()
    if stop.signum:
        job.save_interrupted()
        return 128 + stop.signum
    job.save_model()
    log(f"done: {job.completed} epochs in {time.time() - job.started:.1f} s")
    return 0
