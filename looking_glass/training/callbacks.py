"""The Keras callbacks of a training run (:class:`looking_glass.training.job.Run`).

They only drive the run: count batches and stop on a signal at a batch end, set the epoch's
learning rate, hand each finished epoch to :meth:`Run.finish_epoch`, and write TensorBoard's
epoch scalars; every decision is the run's (or :mod:`looking_glass.training.loop`'s).
"""

from __future__ import annotations

import functools
import time

from looking_glass.training.errors import log
from looking_glass.training.loop import epoch_learning_rate
from looking_glass.training.tensorboard import tensorboard_installed, write_epoch_scalars

__all__ = ["make_callbacks"]


def make_callbacks(run):
    """The Keras callbacks of ``run``: stop on a signal at a batch end, finish each epoch
    (:meth:`Run.finish_epoch`), and TensorBoard's epoch scalars (skipping an interrupted epoch)."""
    import keras

    class StopOnSignal(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            run.batches_since_epoch += 1
            if run.stop.signum:
                self.model.stop_training = True

    class EpochEnd(keras.callbacks.Callback):
        """Validation, the metric line, prediction panels and the checkpoint of each epoch."""

        def on_epoch_begin(self, epoch, logs=None):
            run.batches_since_epoch = 0
            run.epoch_started = time.time()
            if run.hp["lr_schedule"] != "constant":
                self.model.optimizer.learning_rate.assign(epoch_learning_rate(run.hp, epoch))

        def on_epoch_end(self, epoch, logs=None):
            if run.stop.signum and run.batches_since_epoch < run.steps:
                return  # an interrupted epoch: handled after fit
            run.finish_epoch(epoch, logs)

    return [StopOnSignal(), EpochEnd(), _tensorboard_callback(run)]  # EpochEnd first: TensorBoard sees its val_* logs


@functools.cache
def _say_no_tensorboard() -> None:
    """Say once per job (a job fits twice when it warms up with a frozen encoder, and makes its
    callbacks for each fit) that scalars are written without the tensorboard package."""
    log("the tensorboard package is not installed: epoch scalars are written with TensorFlow's raw summary ops "
        "(the layout of keras.callbacks.TensorBoard: train/ and validation/, epoch_<metric>)")


def _tensorboard_callback(run):
    """Keras' TensorBoard callback, or raw scalar events without the tensorboard package; both
    skip an interrupted epoch."""
    import keras

    def interrupted_epoch():
        return run.stop.signum and run.batches_since_epoch < run.steps

    if tensorboard_installed():

        class TensorBoard(keras.callbacks.TensorBoard):
            def on_epoch_end(self, epoch, logs=None):
                if not interrupted_epoch():
                    super().on_epoch_end(epoch, logs)

        tensorboard = TensorBoard(
            log_dir=str(run.paths.tensorboard), histogram_freq=0, write_graph=False, update_freq="epoch", profile_batch=0
        )
    else:
        _say_no_tensorboard()

        class ScalarEvents(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                if not interrupted_epoch():
                    write_epoch_scalars(run.paths.tensorboard, epoch, logs or {})

        tensorboard = ScalarEvents()
    return tensorboard
