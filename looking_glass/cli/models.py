"""``models``: the registered model versions of a deployment, and which one its workers run.

    looking-glass models [--stack NAME | --embedded STATE] [--json]
    looking-glass models register MODEL [--version V] [--model-id ID] [--stack NAME | --embedded STATE]
    looking-glass models use VERSION [--stack NAME | --embedded STATE]

The registry (:mod:`looking_glass.model.registry`) is ``registry/<model_id>/<version>/`` in the
deployment's masks bucket (on a stack, the workers' role may read ``registry/*`` there and
nothing else of it); the active model is an SSM parameter (the stack output
``ActiveModelParameterName``, which the worker job definition names) that workers read when
they start, so ``models use`` takes effect for the next workers without a redeploy (``models
use`` of the previous version goes back; ``models use shipped`` clears the parameter, so the
workers run the model shipped in their image again).
"""

from __future__ import annotations

import json
import sys


def registry_location(deployment, *, need_parameter: bool = False) -> tuple[str, str | None]:
    """(registry bucket, active-model SSM parameter) of a resolved deployment: the masks bucket
    (``registry/*``, which the workers may read) and the parameter its workers read. A stack
    whose workers run a pinned ``model_s3_uri`` has no parameter (None); with ``need_parameter``
    that is a :class:`~looking_glass.model.registry.RegistryError` (exit 2: there is nothing
    ``models use`` could change)."""
    from looking_glass.model.registry import RegistryError, parameter_name
    from looking_glass.runtime.resources import OUTPUT_ACTIVE_MODEL_PARAMETER

    bucket = deployment.resources.masks_bucket
    if deployment.kind == "embedded":
        return bucket, parameter_name(bucket)
    parameter = (deployment.outputs or {}).get(OUTPUT_ACTIVE_MODEL_PARAMETER)
    if not parameter and need_parameter:
        raise RegistryError(f"{deployment.describe()} has no {OUTPUT_ACTIVE_MODEL_PARAMETER} output: its workers run "
                           "the model pinned by the model_s3_uri setting; deploy without model_s3_uri to "
                           "choose the model with `looking-glass models use`")
    return bucket, parameter or None


def _deployment(args):
    from looking_glass.local.deployment import resolve

    return resolve(args.stack, args.embedded)


def cmd_models(args) -> int:
    """List the registered versions (validation metrics, parent, which one is active)."""
    from looking_glass.model.registry import active_uri, list_models, shipped_record

    dep = _deployment(args)
    bucket, parameter = registry_location(dep)
    active = active_uri(dep.client("ssm"), parameter) if parameter else None
    registered = [{**r.summary(active), "shipped": False} for r in list_models(dep.client("s3"), bucket)]
    # The shipped model is a row too, first: active when the deployment has a parameter and no
    # version is in it (a stack pinned to model_s3_uri runs that model, not the shipped one).
    shipped = {**shipped_record().summary(), "shipped": True, "active": parameter is not None and active is None}
    rows = [shipped, *registered]
    if args.json:
        print(json.dumps({"active": active, "parameter": parameter, "models": rows}, indent=2))
        return 0
    header = ("", "MODEL_ID/VERSION", "VAL_IOU", "VAL_F1", "PARENT", "REGISTERED")
    table = [header] + [("*" if r["active"] else "", f"{r['model_id']}/{r['version']}",
                         "-" if r["val_iou"] is None else f"{r['val_iou']:.4f}",
                         "-" if r["val_f1"] is None else f"{r['val_f1']:.4f}",
                         r["parent"] or "-", "shipped" if r["shipped"] else r["registered"] or "-") for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    _print_provenance(rows)
    if not registered:
        print(f"no registered models in s3://{bucket}/registry/ (register one: looking-glass models register MODEL)")
    if parameter is None:
        print("active: the model pinned by the stack's model_s3_uri setting (no active-model parameter)")
    else:
        print(f"active ({parameter}): {active or 'none: the workers run the model shipped in their image'}")
    return 0


def _print_provenance(rows: list[dict]) -> None:
    """Under the table, where each row's VAL_IOU/VAL_F1 come from (a user read them as accuracy on
    their own imagery): the validation chips of the data that version was trained on, and the
    real-imagery evaluation its sidecar records, if any."""
    print("VAL_IOU/VAL_F1: pixel scores on the validation chips of each version's own training data, "
          "not on your imagery:")
    for r in rows:
        real = f"; on real imagery: {r['real_imagery']}" if r["real_imagery"] else ""
        print(f"  {r['model_id']}/{r['version']}: {r['validated_on']}{real}")


def cmd_register(args) -> int:
    """Upload a model (and its sidecar) as a new registered version, once it passed the model
    check (``model.registry.register``: corrupt or mismatched is exit 2, nothing uploaded)."""
    from looking_glass.model.registry import register

    dep = _deployment(args)
    bucket, _ = registry_location(dep)
    record = register(dep.client("s3"), bucket, args.model, version=args.version, model_id=args.model_id)
    print(f"registered {record.name}: {record.uri}")
    return 0


def cmd_use(args) -> int:
    """Make a registered version the active model (workers starting from now on load it)."""
    from looking_glass.model.registry import use

    dep = _deployment(args)
    bucket, parameter = registry_location(dep, need_parameter=True)
    record, previous = use(dep.client("s3"), dep.client("ssm"), bucket, parameter, args.version)
    where = record.uri or "shipped: the workers run the model in their image; no version is active"
    print(f"active model: {record.name} ({where})")
    print(f"previously: {previous or 'none (the shipped model)'}", file=sys.stderr)
    return 0


def _add_target(p) -> None:
    group = p.add_mutually_exclusive_group()
    group.add_argument("--stack", nargs="?", const="", metavar="NAME",
                       help="a deployed stack (NAME defaults to LookingGlass): the registry in its masks bucket")
    group.add_argument("--embedded", metavar="STATE",
                       help="state file of `looking-glass up` (default ~/.looking-glass/embedded.json)")


def add_commands(sub) -> None:
    """Add ``models`` (list), ``models register`` and ``models use``."""
    models = sub.add_parser("models", help="registered model versions and the active one; register, use")
    _add_target(models)
    models.add_argument("--json", action="store_true", help="print JSON")
    models.set_defaults(func=cmd_models)
    actions = models.add_subparsers(dest="action")
    use = actions.add_parser("use", help="make a registered version (or the shipped model) the active model (no redeploy)")
    use.add_argument("version", help="VERSION or MODEL_ID/VERSION; `shipped` (or the shipped model's own "
                                     "id/version) goes back to the model shipped in the workers' image")
    _add_target(use)
    use.set_defaults(func=cmd_use)
    reg = actions.add_parser("register", help="upload a model (.keras with its sidecar) as a new version")
    reg.add_argument("model", help="the model: a .keras file with its sidecar, the sidecar, or a folder holding one "
                                   "(e.g. RUN/model); checked (loaded with Keras) before anything is uploaded")
    reg.add_argument("--version", help="version (default: the sidecar's)")
    reg.add_argument("--model-id", help="model id (default: the sidecar's)")
    _add_target(reg)
    reg.set_defaults(func=cmd_register)
