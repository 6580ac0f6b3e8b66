"""Which model a job runs, as the one text its record keeps (``model``) and its identity covers.

A job's id covers the model that will process it (``submit`` writes it into the AOI's
``looking_glass`` member), so a resubmit after the model changed is a new job, never the old
model's results handed back. The text is one of:

- ``s3://BUCKET/registry/ID/VERSION/model.keras``: a registered version made active (``models
  use``), or any ``s3://`` model a stack pins (cdk.json ``model_s3_uri``);
- ``shipped:ID/VERSION``: the model shipped in the package (no version active), whose id and
  version its sidecar gives (an upgraded shipped model is another text);
- ``file:PATH#ID/VERSION@sha256:HEX``: a local Keras file (``up --model FILE``), with its
  sidecar's id and version and the first 16 hex digits of the file's SHA-256 (another file,
  or the same path trained again, is another text);
- "" for a job recorded before jobs kept their model (the deployment's own, not known).

:func:`looking_glass.model.registry.model_label` names each as ``ID/VERSION``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from looking_glass.model.registry import FILE_MODEL_PREFIX, SHIPPED_MODEL_PREFIX, shipped_record


def shipped_identity() -> str:
    """``shipped:ID/VERSION`` of the model shipped in the package (its sidecar's id and version)."""
    return f"{SHIPPED_MODEL_PREFIX}{shipped_record().name}"


def file_identity(path: str | Path) -> str:
    """``file:PATH#ID/VERSION@sha256:HEX`` of the local Keras file ``path`` (absolute; its
    sidecar ``.json`` beside it names ``model_id`` and ``version``; without a readable one the
    file's name stands for them). Raises OSError when the file cannot be read."""
    path = Path(path).resolve()
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    try:
        meta = json.loads(path.with_suffix(".json").read_text())
    except (OSError, ValueError):
        meta = {}
    meta = meta if isinstance(meta, dict) else {}
    model_id, version = str(meta.get("model_id") or ""), str(meta.get("version") or "")
    name = f"{model_id}/{version}" if model_id and version else (model_id or path.name)
    return f"{FILE_MODEL_PREFIX}{path}#{name}@sha256:{digest.hexdigest()[:16]}"
