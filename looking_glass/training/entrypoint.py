"""SageMaker training entry point for the DeepLab V3+ building segmenter.

    python -m looking_glass.training.entrypoint [--root DIR]
    python -m training.train [--root DIR]      (the same: the script the training image runs)

The training image (``training/Dockerfile``) runs ``training/train.py`` as ``train``, which
calls :func:`main`. ``--root`` defaults to the environment variable ``LG_SM_ROOT``, else
``/opt/ml``; ``looking_glass.training.local.run_local`` lays out a local root the same way and
runs this module in a subprocess.

The library behind it: :mod:`~looking_glass.training.hyperparameters`,
:mod:`~looking_glass.training.layout`, :mod:`~looking_glass.training.data`,
:mod:`~looking_glass.training.loop`, :mod:`~looking_glass.training.job`,
:mod:`~looking_glass.training.checkpoints`, :mod:`~looking_glass.training.tensorboard` and
:mod:`~looking_glass.training.panels`.

Contract (the SageMaker training container layout, under the root)
------------------------------------------------------------------
``input/config/hyperparameters.json``
    A JSON object; SageMaker writes every value as a string (``"16"``, ``"true"``). JSON numbers
    and booleans are accepted as well, and so are JSON-encoded strings (``"\\"xception\\""``, as
    the SageMaker Python SDK sends them). Every value is validated and an error names the key;
    an unknown key is an error that lists the known ones. The table is :data:`HYPERPARAMETERS`
    (``python -m training.train --help-hyperparameters`` prints it). A missing file means all
    defaults.
``input/data/train`` (required), ``input/data/validation`` (optional)
    Each channel is either a prepared dataset (``manifest.json`` plus ``train/`` and
    ``validation/`` shard folders, see :mod:`looking_glass.datasets.prepare`), of which the ``train``
    channel uses the ``train`` split and the ``validation`` channel the ``validation`` split, or
    a folder holding ``shard-*.npz`` files directly. Both channels may point at the same dataset.
    Without a validation channel training still runs, with no validation metrics (it says so).
    Chips are held in memory (image uint8 and the head's target only).
``input/data/init`` (optional: fine-tuning)
    A starting model: one ``.keras`` file with its ``.json`` sidecar, or one SageMaker
    ``model.tar.gz`` holding them (:mod:`looking_glass.training.init`). The job then starts from
    its architecture and weights: the sidecar's ``config`` sets the model hyperparameters (a
    ``head`` or ``input_size`` given that differs is an error), the fine-tuning defaults replace
    the table's (``--help-hyperparameters``), and the saved sidecar names it as ``parent``. A
    missing, corrupt or incompatible model (another head, another input size than its sidecar's
    or the chips') fails the job with one clear reason.
``model/``
    ``model.keras`` (uncompiled) and its sidecar ``model.json`` in the format of
    :mod:`looking_glass.model.segmenter` (model_id, version, trained, description, threshold, config)
    plus a ``training`` record (hyperparameters, data, per-epoch metrics, elapsed time), so
    ``Segmenter.load("<root>/model/model.keras")`` works; ``export/`` (a TensorFlow SavedModel
    from Keras 3 ``model.export``, skipped with a warning if that fails); ``progress.gif``.
``checkpoints/``
    After every epoch: ``epoch-NNNN.keras`` (the full model), ``epoch-NNNN.optimizer.npz``
    (Adam's step count and moment estimates) and ``state.json`` (completed epochs, metric
    history, config, the files). SageMaker syncs this folder to S3 for spot training; a job
    that finds ``state.json`` at start resumes (see Resuming). ``panels/epoch-NNNN.png`` keeps
    each epoch's prediction panel so that the progress GIF covers resumed runs too.
``output/tensorboard``
    ``keras.callbacks.TensorBoard`` logs in ``train/`` and ``validation/`` (epoch loss and the
    validation metrics below, at 0-based epoch steps as Keras counts them) and
    ``predictions/``: per epoch, an image summary of up to 4 fixed validation chips (training
    chips if there is no validation set), each image | truth | prediction side by side.
    ``tf.summary.scalar``/``image`` (and so Keras' callback) need the ``tensorboard`` package,
    which TensorFlow 2.21 no longer depends on; without it the same events (same tags, plugin
    metadata and layout) are written with TensorFlow's own ``tf.summary.write``.
``output/data/progress.gif``
    A copy of the progress GIF (SageMaker uploads output/data as output.tar.gz).
``output/failure``
    On any error, the reason (first line) and, for unexpected errors, the traceback; the reason
    also goes to stderr. Exit code 2 for bad hyperparameters (including ``input_size`` not
    matching the chips), 1 for anything else.

Outside the container (``--root`` or ``LG_SM_ROOT`` given) every path is under the root. With
the default root the ``SM_*`` variables the Dockerfile sets (``SM_MODEL_DIR``,
``SM_CHANNEL_TRAIN``, ``SM_CHANNEL_VALIDATION``, ``SM_CHECKPOINT_DIR``, ``SM_INPUT_CONFIG_DIR``,
``SM_OUTPUT_DATA_DIR``) override the matching paths.

Training
--------
Adam at ``learning_rate`` (``lr_schedule``: constant, or a cosine or linear decay after the
``freeze_epochs`` epochs in which the encoder is frozen); loss for the ``binary`` head: weighted
binary cross-entropy (``pos_weight``), plus soft Dice, or the Lovasz hinge (``loss``); Huber
(``huber_delta`` metres) on the signed distance for the ``sdt`` head. With ``patience`` the job
stops after that many epochs without a better ``val_iou``; with ``restore_best`` the model
written holds the best epoch's weights. With ``random_crops`` samples are windows at random
offsets over neighbouring chips; ``samples_per_epoch`` sets the epoch's length.
Each epoch is ``floor(samples / batch_size)`` batches (at least 1) of a fresh permutation;
the order and the augmentation (random 90-degree rotation and horizontal flip, the same for
image and target) are functions of (seed, epoch, batch), so a resumed run sees the batches an
uninterrupted one would have seen.

After each epoch the model is run over the whole validation set and the scores are computed
once from the pixel counts accumulated over all of it (``confusion_counts`` /
``scores_from_counts``): dataset-level IoU, F1, precision and recall, not Keras' average of
per-batch values. A building is ``probability >= threshold`` (binary head) or ``distance > 0``
(SDT head). One plain line per epoch goes to stdout, e.g.::

    epoch=3 loss=0.123400 val_loss=0.234500 val_iou=0.812300 val_f1=0.890100 val_precision=0.901000 val_recall=0.879500 seconds=41.2
    epoch=3 loss=0.512000 val_loss=0.800000 val_mse=3.120000 val_iou=0.700000 val_f1=0.820000 val_precision=... val_recall=... seconds=40.0   (SDT head)
    epoch=3 loss=0.123400 seconds=30.1   (no validation channel)

:data:`METRIC_DEFINITIONS` are the SageMaker metric definitions (name and regex) for these
lines: ``train:loss`` matches ``epoch=N loss=X`` (``loss=`` right after the epoch, so never
``val_loss``), ``validation:<name>`` matches ``val_<name>=X``, ``epoch`` the epoch number.
Values are printed as fixed-point decimals, which ``[0-9.]+`` matches (a NaN loss, printed
``nan``, is simply not reported).

Resuming (spot training)
------------------------
With ``checkpoints/state.json`` present, the job loads the checkpointed model (architecture,
weights and batch-norm statistics), restores Adam's state (iteration count, first and second
moments; the learning rate comes from the current hyperparameters) and continues at
``initial_epoch`` = completed epochs, keeping the metric history, the accumulated training time
and the per-epoch panels. The model hyperparameters must match the checkpoint's (else an error
says so); others (epochs, learning rate, ...) may change. Not restored: the state of Python's,
NumPy's and TensorFlow's global random generators (the data order and augmentation do not
depend on them) and TensorBoard's writers (new event files are appended to the same folder).
If the checkpoint already has ``epochs`` epochs, nothing is trained and the model is saved.

SIGTERM (spot interruption, ``docker stop``) and SIGINT
-------------------------------------------------------
The handler only sets a flag. A callback checks it at every batch end and stops training; a
checkpoint of the current weights is saved (as ``interrupted-epoch-NNNN``: ``state.json`` keeps
the completed epoch count, so the interrupted epoch is re-run from its start, on top of its
partial updates), a line says so, and the process exits with 128 + the signal number (143 for
SIGTERM) and no failure file: a reclaim is not an algorithm failure. A signal during validation
skips the rest of it (that epoch has no validation metrics); a signal before training started
exits at once. SageMaker allows 120 s between SIGTERM and SIGKILL; the wait is one batch plus
one model save.
"""


from __future__ import annotations

import argparse
import signal
import sys
import traceback

from looking_glass.training.errors import (
    EXIT_BAD_HYPERPARAMETERS,
    EXIT_FAILURE,
    HyperparameterError,
    Interrupted,
    TrainingError,
    log,
)
from looking_glass.training.hyperparameters import hyperparameter_table
from looking_glass.training.job import run
from looking_glass.training.layout import DEFAULT_ROOT, Paths
from looking_glass.training.loop import StopFlag

PROG = "python -m training.train"


def write_failure(paths: Paths, reason: str) -> None:
    """The failure reason to stderr and to ``output/failure`` (what DescribeTrainingJob shows)."""
    print(reason, file=sys.stderr, flush=True)
    try:
        paths.failure.parent.mkdir(parents=True, exist_ok=True)
        paths.failure.write_text(reason + "\n")
    except OSError as e:
        print(f"could not write {paths.failure}: {e}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    """Run the training job of the SageMaker layout (``--root``); returns the exit code.

    0 done; 2 bad hyperparameters and 1 any other failure (the reason in ``output/failure``);
    128 + the signal number after SIGTERM/SIGINT (no failure file). Never raises for a job
    failure. The signal handlers are restored on return.
    """
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default=None, help=f"SageMaker root (default: $LG_SM_ROOT or {DEFAULT_ROOT})")
    parser.add_argument("--help-hyperparameters", action="store_true", help="print the hyperparameter table")
    args = parser.parse_args(argv)
    if args.help_hyperparameters:
        print(hyperparameter_table())
        return 0
    paths = Paths.resolve(args.root)
    try:
        paths.failure.unlink(missing_ok=True)  # a previous attempt's reason is not this one's
    except OSError:
        pass
    stop = StopFlag()
    previous = {s: signal.signal(s, stop.handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        return run(paths, stop)
    except Interrupted:
        log(f"received {signal.Signals(stop.signum).name} before training started: exiting (no new checkpoint)")
        return 128 + stop.signum
    except HyperparameterError as e:
        write_failure(paths, f"bad hyperparameters: {e}")
        return EXIT_BAD_HYPERPARAMETERS
    except TrainingError as e:
        write_failure(paths, f"training failed: {e}")
        return EXIT_FAILURE
    except Exception as e:  # noqa: BLE001 -- SageMaker needs the reason in output/failure
        write_failure(paths, f"training failed: {type(e).__name__}: {e}\n\n{traceback.format_exc()}")
        return EXIT_FAILURE
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


if __name__ == "__main__":
    sys.exit(main(prog="python -m looking_glass.training.entrypoint"))
