"""The training job's contract with the cloud, shared by the entry point, the stack and the CLI.

Imports no TensorFlow: the CDK stack (``stacks/training.py``), the entry point
(:mod:`looking_glass.training.entrypoint`) and ``looking-glass train --stack`` all read these
definitions, so the metric regexes, the channel layout and the execution input cannot drift apart.

A run on a deployed stack (:func:`start_on_stack`): the prepared dataset (``prepare`` or
``synth-data`` output: ``manifest.json`` + ``train/`` and ``validation/`` shards) is uploaded to
the training bucket, each channel receiving the manifest and its own split, then the stack's
state machine is started with ``{"hyperparameters": {...}}`` (every value a string, as SageMaker
wants); the state machine names the job and runs it to completion.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from looking_glass.datasets.chips import read_manifest
from looking_glass.datasets.errors import DatasetError
from looking_glass.training.hyperparameters import HyperparameterError, parse_hyperparameters

# Where the training job's channels and outputs live in the training bucket.
TRAIN_PREFIX = "data/train/"
VALIDATION_PREFIX = "data/validation/"
INIT_PREFIX = "data/init/"  # the init channel: the model a fine-tuning job starts from
MODELS_PREFIX = "models/"
CHECKPOINTS_PREFIX = "checkpoints/"
CHANNEL_PREFIXES = {"train": TRAIN_PREFIX, "validation": VALIDATION_PREFIX}

# SageMaker metric definitions for the entry point's per-epoch line, e.g.
#   epoch=3 loss=0.123400 val_loss=0.234500 val_iou=0.812300 val_f1=0.890100 ... seconds=41.2
# ``train:loss`` matches ``loss=`` right after the epoch, so never ``val_loss``.
METRIC_DEFINITIONS = [
    {"Name": "epoch", "Regex": r"epoch=([0-9]+) "},
    {"Name": "train:loss", "Regex": r"epoch=[0-9]+ loss=([0-9.]+)"},
    {"Name": "validation:loss", "Regex": r"val_loss=([0-9.]+)"},
    {"Name": "validation:iou", "Regex": r"val_iou=([0-9.]+)"},
    {"Name": "validation:f1", "Regex": r"val_f1=([0-9.]+)"},
    {"Name": "validation:precision", "Regex": r"val_precision=([0-9.]+)"},
    {"Name": "validation:recall", "Regex": r"val_recall=([0-9.]+)"},
    {"Name": "validation:mse", "Regex": r"val_mse=([0-9.]+)"},
]

# Step Functions execution names: 1-80 of these characters.
EXECUTION_NAME = re.compile(r"^[A-Za-z0-9_-]{1,80}$")
FINAL_EXECUTION_STATES = {"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"}


class TrainingRunError(ValueError):
    """A bad argument or dataset for a training run; the message is the user's to see."""


def hyperparameter_strings(hyperparameters) -> dict[str, str]:
    """SageMaker's form: every value a string (booleans as "true"/"false")."""
    if hyperparameters is None:
        return {}
    if not isinstance(hyperparameters, dict):
        raise TrainingRunError(f"hyperparameters must be a JSON object, got {type(hyperparameters).__name__}")
    out = {}
    for key, value in hyperparameters.items():
        if not isinstance(key, str) or not key:
            raise TrainingRunError(f"hyperparameter names must be non-empty strings, got {key!r}")
        if isinstance(value, bool):
            out[key] = "true" if value else "false"
        elif isinstance(value, (str, int, float)):
            out[key] = str(value)
        else:
            raise TrainingRunError(
                f"hyperparameter {key!r}: expected a string, number or boolean, got {type(value).__name__}"
            )
    return out


def check_hyperparameters(values: dict[str, str], init_config: dict | None = None) -> None:
    """Validate hyperparameters with the entry point's own rules before a cloud run starts.

    Raises :class:`TrainingRunError` with the entry point's message: every check, the
    combinations (``freeze_epochs`` below ``epochs``, the model fields together, a fine-tune's
    ``head``/``input_size`` against ``init_config``) included. Imports no TensorFlow.
    """
    try:
        parse_hyperparameters(values, init_config=init_config)
    except HyperparameterError as exc:
        raise TrainingRunError(str(exc)) from None


def dataset_files(data_dir) -> dict[str, list[tuple[Path, str]]]:
    """(local file, key under the channel prefix) per channel of a prepared dataset. Raises
    :class:`TrainingRunError` for a folder without a readable manifest.json, or a dataset with
    no train chip (:func:`no_train_chips`: one line saying how to get some)."""
    path = Path(data_dir).expanduser()
    manifest = path / "manifest.json"
    try:
        doc = read_manifest(path)
    except DatasetError as exc:
        raise TrainingRunError(str(exc)) from None
    files = {}
    for channel in CHANNEL_PREFIXES:
        shards = sorted((path / channel).glob("shard-*.npz"))
        if channel == "train" and (not shards or _count(doc, "train") == 0):
            raise TrainingRunError(no_train_chips(path, doc if isinstance(doc, dict) else {}))
        files[channel] = [(manifest, "manifest.json")] + [(s, f"{channel}/{s.name}") for s in shards]
    return files


def _count(manifest, key: str) -> int | None:
    """The manifest's ``counts[key]`` when it is a whole number, else None."""
    counts = manifest.get("counts") if isinstance(manifest, dict) else None
    value = counts.get(key) if isinstance(counts, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def no_train_chips(path: Path, manifest: dict) -> str:
    """The one-line refusal of the prepared dataset ``path`` (its parsed ``manifest``) that has no
    train chip: why, from the manifest's counts and parameters, and how to get train chips."""
    train, val, written = (_count(manifest, k) for k in ("train", "validation", "written"))
    params = manifest.get("parameters") if isinstance(manifest.get("parameters"), dict) else {}
    fraction = params.get("val_fraction")
    if train:  # the manifest counts train chips, the folder lacks their shards
        return (f"{path / 'train'} holds no shard-*.npz files though {path / 'manifest.json'} counts {train:,} train "
                "chips: copy the whole dataset folder (manifest.json, train/ and validation/)")
    if written == 0:
        return (f"{path}: no train chips, nothing to train on: prepare wrote no chip at all (its manifest's counts "
                "say why, e.g. dropped_nodata); prepare it again from images that the footprints cover")
    held = f"all {val:,} chips went to validation" if val else "no chip went to train"
    how = (f" (prepared with --val-fraction {fraction:g})" if isinstance(fraction, (int, float)) and fraction >= 1
           else "")
    return (f"{path}: no train chips, nothing to train on: {held}{how}; prepare it again with a --val-fraction "
            "below 1 (default 0.2) or from more images, so that some blocks of chips go to train")


@dataclass(frozen=True)
class TrainingStackOutputs:
    """What ``train --stack`` needs of a deployed stack: the training bucket and state machine."""

    bucket: str
    state_machine_arn: str

    @classmethod
    def from_outputs(cls, outputs: dict, stack: str) -> "TrainingStackOutputs":
        """From a stack's outputs; raises :class:`TrainingRunError` if the training ones are missing."""
        from looking_glass.runtime.resources import OUTPUT_TRAINING_BUCKET, OUTPUT_TRAINING_STATE_MACHINE

        missing = [k for k in (OUTPUT_TRAINING_BUCKET, OUTPUT_TRAINING_STATE_MACHINE) if not outputs.get(k)]
        if missing:
            raise TrainingRunError(
                f"stack {stack} has no training outputs ({', '.join(missing)}): is its Training stack deployed?"
            )
        return cls(outputs[OUTPUT_TRAINING_BUCKET], outputs[OUTPUT_TRAINING_STATE_MACHINE])


def upload_dataset(s3, bucket: str, data_dir, progress: Callable[[str], None] = lambda _: None) -> int:
    """Upload a prepared dataset to the channel prefixes; returns the number of objects written.

    Each channel's prefix is cleared of shards that are not in this dataset first, so a smaller
    dataset never trains on a previous run's leftovers.
    """
    files = dataset_files(data_dir)
    written = 0
    for channel, prefix in CHANNEL_PREFIXES.items():
        wanted = {prefix + key for _, key in files[channel]}
        stale = [
            {"Key": obj["Key"]}
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            for obj in page.get("Contents", [])
            if obj["Key"] not in wanted
        ]
        for i in range(0, len(stale), 1000):
            s3.delete_objects(Bucket=bucket, Delete={"Objects": stale[i : i + 1000], "Quiet": True})
        for local, key in files[channel]:
            s3.upload_file(str(local), bucket, prefix + key)
            written += 1
            progress(f"s3://{bucket}/{prefix}{key}")
    return written


def execution_input(hyperparameters: dict[str, str], init: bool = False) -> str:
    """The state machine's execution input (JSON): ``{"hyperparameters": {...}}``, or ``{}``;
    with ``init`` also ``"init": true`` (the job gets the ``init`` channel, ``INIT_PREFIX``)."""
    doc = {"hyperparameters": hyperparameters} if hyperparameters else {}
    if init:
        doc["init"] = True
    return json.dumps(doc)


def upload_init(s3, bucket: str, init_dir, progress: Callable[[str], None] = lambda _: None) -> int:
    """Upload a staged starting model (:func:`looking_glass.training.init.stage_init`'s folder)
    to ``INIT_PREFIX``, clearing what was there; returns the number of objects written."""
    files = sorted(p for p in Path(init_dir).iterdir() if p.is_file())
    stale = [{"Key": obj["Key"]}
             for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=INIT_PREFIX)
             for obj in page.get("Contents", [])]
    for i in range(0, len(stale), 1000):
        s3.delete_objects(Bucket=bucket, Delete={"Objects": stale[i: i + 1000], "Quiet": True})
    for f in files:
        s3.upload_file(str(f), bucket, INIT_PREFIX + f.name)
        progress(f"s3://{bucket}/{INIT_PREFIX}{f.name}")
    return len(files)


def start_on_stack(
    sfn,
    s3,
    outputs: TrainingStackOutputs,
    hyperparameters: dict[str, str],
    data_dir=None,
    run_name: str | None = None,
    progress: Callable[[str], None] = lambda _: None,
    init_dir=None,
) -> str:
    """Upload the dataset (if given) and the staged starting model (``init_dir``, if given) and
    start the training state machine; its execution ARN."""
    if run_name is not None and not EXECUTION_NAME.match(run_name):
        raise TrainingRunError(
            f"invalid run name {run_name!r}: 1-80 letters, digits, hyphens or underscores"
        )
    if data_dir is not None:
        dataset_files(data_dir)  # fail on a bad dataset before anything is written
        upload_dataset(s3, outputs.bucket, data_dir, progress)
    if init_dir is not None:
        upload_init(s3, outputs.bucket, init_dir, progress)
    kwargs = {"stateMachineArn": outputs.state_machine_arn,
              "input": execution_input(hyperparameters, init=init_dir is not None)}
    if run_name:
        kwargs["name"] = run_name
    return sfn.start_execution(**kwargs)["executionArn"]


def wait_for_execution(sfn, execution_arn: str, poll_s: float = 30.0, on_poll=lambda _: None) -> dict:
    """Poll an execution until it is final; returns describe_execution's answer."""
    while True:
        answer = sfn.describe_execution(executionArn=execution_arn)
        on_poll(answer)
        if answer["status"] in FINAL_EXECUTION_STATES:
            return answer
        time.sleep(poll_s)
