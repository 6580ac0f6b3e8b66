"""The model a deployment's workers load when they start now, as a job records it
(:mod:`looking_glass.model.identity`): what ``submit`` puts into a job's identity and ``retry``
records on a job whose tiles it queues again."""

from __future__ import annotations

from botocore.exceptions import BotoCoreError, ClientError

from looking_glass.model.fetch import active_uri
from looking_glass.model.identity import shipped_identity
from looking_glass.model.registry import parameter_name
from looking_glass.runtime.resources import OUTPUT_ACTIVE_MODEL_PARAMETER, OUTPUT_PINNED_MODEL


def deployment_model(dep) -> str:
    """What a worker of ``dep`` (a resolved deployment: ``kind``, ``resources``, ``outputs``,
    ``client``; the embedded run's ``model``) starting now loads, in the workers' own order: the
    embedded run's ``up --model`` file (its ``file:`` text, kept in the state file), a stack's
    pinned ``model_s3_uri`` (output ``PinnedModelUri``), the active model (``models use``: the
    SSM parameter's URI), else the shipped model (``shipped:ID/VERSION``). "" where it cannot be
    known: a stack without either output (deployed before them), or the parameter unreadable."""
    local = str(getattr(dep, "model", "") or "")
    if local:
        return local
    outputs = getattr(dep, "outputs", None) or {}
    if outputs.get(OUTPUT_PINNED_MODEL):
        return str(outputs[OUTPUT_PINNED_MODEL])
    if dep.kind == "embedded":
        parameter = parameter_name(dep.resources.masks_bucket)
    else:
        parameter = outputs.get(OUTPUT_ACTIVE_MODEL_PARAMETER)
        if not parameter:
            return ""
    try:
        return active_uri(dep.client("ssm"), parameter) or shipped_identity()
    except (ClientError, BotoCoreError):
        return ""


def record_retry_model(store, dep, job: dict) -> dict:
    """Record on ``job`` (its record, before ``retry`` reset any tile) the model the workers that
    ``retry`` starts will load (:func:`deployment_model`) when it is another than the job's
    ``model``: that becomes the job's ``model``, and the one it replaces joins ``earlier_models``
    when done tiles of it stay (the job was processed by several models), so records and
    exports name what processed the tiles. Returns the values written ({} for none: the same
    model, or the new one cannot be known)."""
    new, old = deployment_model(dep), str(job.get("model") or "")
    if not new or new == old:
        return {}
    values: dict = {"model": new}
    if int(job.get("tiles_done") or 0) > 0:
        values["earlier_models"] = [*(str(m) for m in job.get("earlier_models") or []), old]
    store.update_job(str(job["job_id"]), values)
    return values


def job_models_label(job: dict) -> str:
    """The model(s) that processed ``job`` (its record) as ``jobs``, ``status`` and exports name
    them: ``ID/VERSION`` of its ``model`` (:func:`~looking_glass.model.registry.model_label`),
    after those of its ``earlier_models`` when a retry ran another model (comma-joined, oldest
    first)."""
    from looking_glass.model.registry import model_label

    models = [*(str(m) for m in job.get("earlier_models") or []), str(job.get("model") or "")]
    return ",".join(dict.fromkeys(model_label(m) for m in models))
