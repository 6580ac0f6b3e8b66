"""``train``, ``evaluate`` and ``plot``: DeepLab V3+ trained here or on a stack, scored and drawn."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from looking_glass.cli.common import (
    CommandError,
    non_negative_int,
    output_file,
    output_folder,
    positive_float,
    positive_int,
)


def _is_json(text: str) -> bool:
    """Whether ``text`` parses as JSON (``[1]``, ``5``: JSON, refused as not an object, rather
    than looked up as a file name)."""
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def _hyperparameters_arg(text: str | None) -> dict:
    """``--hyperparameters``: a JSON object (text starting with ``{``), else the name of a file
    holding one. Each value is checked against the hyperparameter table (known key, type, range:
    :func:`~looking_glass.training.hyperparameters.check_values`, no TensorFlow), so a bad one
    ends the command before anything is staged, uploaded or imported. Raises
    :class:`CommandError` (a missing or unreadable file, not JSON, not an object) or
    HyperparameterError (a bad key or value), exit status 2 either way."""
    from looking_glass.training.hyperparameters import check_values

    if not text:
        return {}
    where = "--hyperparameters"
    if not text.lstrip().startswith("{") and not _is_json(text):
        path = Path(text).expanduser()
        if not path.exists():
            raise CommandError(f"--hyperparameters {text}: no such file (give a JSON object such as "
                               "'{\"epochs\": 5}', or a JSON file)")
        if not path.is_file():
            raise CommandError(f"--hyperparameters {text}: not a file")
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"--hyperparameters {path}: cannot be read: {exc}") from None
        where = f"--hyperparameters {path}"
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CommandError(f"{where} is not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise CommandError(f"{where} must be a JSON object ({{\"epochs\": 5}}), not {type(raw).__name__}")
    check_values(raw)
    return raw


def cmd_train(args) -> int:
    """Train with the SageMaker entry point: here (``--local``) or through a stack (``--stack``).
    Everything is checked before the dataset or the init model is staged or uploaded, and before
    TensorFlow is loaded: each hyperparameter value, the dataset (a manifest with train chips),
    the init model, then the hyperparameters together (the job's own rules, a fine-tune's
    defaults included). A bad one is one ``error:`` line, exit status 2."""
    hyperparameters = _hyperparameters_arg(args.hyperparameters)
    if args.stack is not None:
        return _train_on_stack(args, hyperparameters)
    if not args.data:
        raise CommandError("train --local needs --data DIR (a prepared dataset)")
    from looking_glass.training.local import run_local

    # The training job is a child process: started through cli.quiet unless -v, so TensorFlow's
    # start-up lines are hidden there as in this process.
    python = [sys.executable, "-m"] + ([] if args.verbose else ["looking_glass.cli.quiet"])
    try:
        return run_local(args.data, args.root, hyperparameters, init=args.init, python=python)
    except ValueError as exc:  # bad hyperparameters or dataset: bad input, exit code 2
        raise CommandError(str(exc)) from None


def _train_on_stack(args, hyperparameters: dict) -> int:
    """Upload the dataset (if --data) and start the stack's training state machine."""
    from looking_glass.local.deployment import resolve_stack
    from looking_glass.training.contract import (
        TrainingRunError,
        TrainingStackOutputs,
        check_hyperparameters,
        dataset_files,
        hyperparameter_strings,
        start_on_stack,
        wait_for_execution,
    )

    if args.root:
        raise CommandError("--root is for --local runs (the training job's root is SageMaker's /opt/ml)")
    import tempfile

    from looking_glass.training.init import stage_init

    staging = tempfile.TemporaryDirectory(prefix="lg-init-")
    try:
        if args.data:  # a readable manifest and train chips, before the stack is asked anything
            dataset_files(args.data)
        values = hyperparameter_strings(hyperparameters)
        init_dir, init_config = None, None
        if args.init:  # staged and checked before anything is uploaded
            init_dir = Path(staging.name) / "init"
            staged, source = stage_init(args.init, init_dir)
            init_config = staged.config
            values.setdefault("init_source", source)
        check_hyperparameters(values, init_config)
        deployment = resolve_stack(args.stack or None)
        outputs = TrainingStackOutputs.from_outputs(deployment.outputs or {}, deployment.name)
        execution = start_on_stack(
            deployment.client("stepfunctions"),
            deployment.client("s3"),
            outputs,
            values,
            data_dir=args.data,
            run_name=args.name,
            progress=lambda uri: print(f"uploaded {uri}", file=sys.stderr),
            init_dir=init_dir,
        )
    except (TrainingRunError, ValueError) as exc:  # until it derives from LookingGlassError
        raise CommandError(str(exc)) from None
    finally:
        staging.cleanup()
    print(execution)
    if not args.wait:
        return 0
    answer = wait_for_execution(
        deployment.client("stepfunctions"),
        execution,
        poll_s=args.poll_seconds,
        on_poll=lambda a: print(f"{a['status']}", file=sys.stderr),
    )
    print(json.dumps({"status": answer["status"], "output": answer.get("output"), "error": answer.get("error"),
                      "cause": answer.get("cause")}, indent=2))
    if answer["status"] != "SUCCEEDED":
        return 1
    _register_output(deployment, answer.get("output"))
    return 0


def _register_output(deployment, output: str | None) -> None:
    """After a successful run: the model lands in the registry (registry/<model_id>/<version>/ of
    the masks bucket, where the workers may read it)."""
    from looking_glass.cli.models import registry_location
    from looking_glass.model.registry import RegistryError, register_artifact

    bucket, _ = registry_location(deployment)

    try:
        artifact = json.loads(output or "{}")["training"]["ModelArtifacts"]["S3ModelArtifacts"]
    except (ValueError, KeyError, TypeError):
        print("the execution's output names no model artifact: nothing registered", file=sys.stderr)
        return
    try:
        record = register_artifact(deployment.client("s3"), bucket, artifact)
    except RegistryError as exc:
        print(f"warning: the model was not registered: {exc}", file=sys.stderr)
        return
    print(f"registered {record.name}: {record.uri} (make it active: looking-glass models use {record.version} "
          f"--stack {deployment.name})", file=sys.stderr)


def _eval_data(args, with_ids: bool = False):
    """(images, masks, sdts, tiles) of ``--data``'s validation chips or of ``--synthetic`` N tiles;
    ``with_ids`` adds each chip's id (the manifest's, or ``z/x/y`` of a synthetic tile)."""
    from looking_glass.datasets.errors import DatasetError
    from looking_glass.training.evaluate import prepared_eval_set, synthetic_eval_set

    if args.data:
        try:
            return prepared_eval_set(args.data, with_ids=with_ids)
        except DatasetError as exc:  # not a prepared dataset: the line names the folder and what to do
            raise CommandError(str(exc)) from None
        except (OSError, ValueError, KeyError) as exc:
            raise CommandError(f"cannot read prepared chips from {args.data}: {exc}") from None
    images, masks, sdts, tiles = synthetic_eval_set(args.synthetic, args.seed)
    if with_ids:
        return images, masks, sdts, tiles, ["/".join(map(str, t)) for t in tiles]
    return images, masks, sdts, tiles


def _model_and_data(args, with_ids: bool = False):
    """(segmenter, :func:`_eval_data`): ``--model`` is resolved and checked first (a ``.keras``
    file, its sidecar or a folder holding one; a Keras archive with its sidecar:
    ``model.model_file.check_model_file``, no TensorFlow yet), then ``--data``'s chips are read
    before the model is loaded, so a dataset that cannot be read or has no validation chips fails
    at once, not after TensorFlow's start; synthetic tiles are drawn after it."""
    from looking_glass.model.model_file import check_model_file

    path = str(check_model_file(args.model, what="--model").path) if args.model else ""
    if args.data:
        data = _eval_data(args, with_ids=with_ids)
        return _load_model(path), data
    segmenter = _load_model(path)
    return segmenter, _eval_data(args, with_ids=with_ids)


def _load_model(path: str):
    from looking_glass.model.segmenter import Segmenter

    try:
        return Segmenter.load(path)
    except Exception as exc:  # noqa: BLE001 - any load failure is the user's to see
        raise CommandError(f"cannot load model {path or '(shipped)'}: {exc}") from None


def cmd_evaluate(args) -> int:
    """Print IoU, F1, precision and recall of a model as JSON (pixels), or of building polygons
    against reference footprints (objects, the SpaceNet matching rule) with ``--polygons``."""
    if getattr(args, "polygons", None):
        return _evaluate_polygons(args)
    if args.truth:
        raise CommandError("--truth goes with --polygons (with --data the truth is in the chips)")
    if getattr(args, "extent", None):
        raise CommandError("--extent goes with --polygons (it limits the polygons scored)")
    from looking_glass.training.evaluate import evaluate

    segmenter, (images, masks, _, tiles) = _model_and_data(args)
    print(json.dumps(evaluate(segmenter, images, masks, tiles=tiles), indent=2))
    if args.data:  # after the scores, where it is read: the model's own training data scores no test
        from looking_glass.training.seen_data import own_data_warning

        warning = own_data_warning(_sidecar(args.model), args.data)
        if warning:
            sys.stdout.flush()
            print(warning, file=sys.stderr)
    return 0


def _sidecar(model: str) -> dict | None:
    """The sidecar of ``--model`` (``model.model_file.check_model_file``'s; the shipped model's
    when ""), None when it cannot be read (the model loaded already: this only feeds a warning)."""
    from looking_glass.model.model_file import check_model_file
    from looking_glass.model.segmenter import SHIPPED_MODEL, load_metadata

    try:
        return check_model_file(model, what="--model").sidecar if model else load_metadata(SHIPPED_MODEL)
    except (OSError, ValueError):  # ModelFileError is a ValueError
        return None


def _evaluate_polygons(args) -> int:
    """``evaluate --polygons PRED --truth TRUTH [--iou T]``: object-level tp/fp/fn/precision/recall/F1."""
    from looking_glass.outlines.evaluate import evaluate_polygons

    if not args.truth:
        raise CommandError("--polygons needs --truth FOOTPRINTS (GeoJSON, GeoPackage, FlatGeobuf or .osm.pbf)")
    import warnings

    extent = getattr(args, "extent", None)
    for flag, path in (("--polygons", args.polygons), ("--truth", args.truth), ("--extent", extent)):
        if path is not None and not Path(path).is_file():
            raise CommandError(f"{flag} {path}: no such file")
    with warnings.catch_warnings(record=True) as caught:  # each as one "warning:" line
        warnings.simplefilter("always")
        result = evaluate_polygons(args.polygons, args.truth, iou=args.iou, extent_path=extent)
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    print(json.dumps(result, indent=2))
    return 0


def _iou_threshold(text: str) -> float:
    """An IoU threshold in (0, 1] (argparse type)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text}")
    return value


def cmd_plot(args) -> int:
    """Draw image, truth, predicted mask and SDT side by side into a PNG."""
    from looking_glass.training.evaluate import plot_examples

    segmenter, (images, masks, sdts, tiles, ids) = _model_and_data(args, with_ids=True)
    plot_examples(segmenter, images, masks, sdts, Path(args.out), count=args.count, ids=ids)
    print(f"wrote {args.out}")
    return 0


def add_commands(sub) -> None:
    """Add ``train``, ``evaluate`` and ``plot`` to the subcommand parsers ``sub``."""
    train = sub.add_parser("train", help="train DeepLab V3+ with the SageMaker entry point, here or on a stack")
    where = train.add_mutually_exclusive_group(required=True)
    where.add_argument("--local", action="store_true", help="run on this machine in an /opt/ml-like root")
    where.add_argument("--stack", nargs="?", const="", metavar="NAME",
                       help="start a SageMaker training job through the deployed stack's state machine "
                            "(NAME defaults to LookingGlass)")
    train.add_argument("--data", help="a prepared dataset (prepare or synth-data output); with --stack it is "
                                      "uploaded to the training bucket first, without it the bucket's data is used")
    train.add_argument("--root", type=output_folder, help="--local: the /opt/ml-like root (default: a new temporary folder); reuse it to resume")
    train.add_argument("--hyperparameters", help="JSON object, or a JSON file, e.g. '{\"epochs\": 5}'")
    train.add_argument("--init", metavar="MODEL",
                       help="fine-tune: start from this model's architecture and weights (shipped, a .keras file "
                            "with its sidecar, a folder such as RUN/model, a model.tar.gz, or an s3:// URI); "
                            "small-data defaults (frozen warm-up, cosine decay, augmentation, early stopping, "
                            "best epoch kept)")
    train.add_argument("--name", help="--stack: the execution name (default: Step Functions picks one)")
    train.add_argument("--wait", action="store_true", help="--stack: follow the execution until it is final")
    train.add_argument("--poll-seconds", type=positive_float, default=30.0, help=argparse.SUPPRESS)
    train.set_defaults(func=cmd_train)

    for name, func, helptext in (
        ("evaluate", cmd_evaluate, "pixel and object (building) IoU, F1, precision, recall of a model (JSON)"),
        ("plot", cmd_plot, "image, truth, predicted mask and SDT side by side (PNG)"),
    ):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("--model", default="", help="Keras model file with its .json sidecar, the sidecar, or a folder "
                                                   "holding one such as RUN/model (default: shipped)")
        source = p.add_mutually_exclusive_group(required=True)
        source.add_argument("--synthetic", type=positive_int, help="N freshly generated synthetic tiles")
        source.add_argument("--data", help="a prepared dataset: its validation chips")
        p.add_argument("--seed", type=non_negative_int, default=0, help="seed of the synthetic tiles")
        if name == "evaluate":
            source.add_argument("--polygons", metavar="PRED",
                                help="building polygons (GeoJSON, GeoPackage, FlatGeobuf, any CRS) scored "
                                     "against --truth by the SpaceNet rule")
            p.add_argument("--truth", metavar="FOOTPRINTS", help="reference footprints for --polygons (any CRS)")
            p.add_argument("--extent", metavar="AOI",
                           help="with --polygons: score only buildings inside this polygon file (e.g. the job's "
                                "AOI; any format and CRS); without it truth outside the predictions is counted "
                                "and warned about")
            p.add_argument("--iou", type=_iou_threshold, default=0.5,
                           help="IoU a matched pair needs to count as a true positive (default 0.5)")
        if name == "plot":
            p.add_argument("--out", required=True, type=output_file, help="PNG file to write")
            p.add_argument("--count", type=positive_int, default=4, help="examples (rows)")
        p.set_defaults(func=func)
