"""The tile enumerator Lambda's handler (``lambdas/tile_enumerator/handler.py`` re-exports it).

S3 ObjectCreated events on the trigger bucket -> :class:`looking_glass.pipeline.enumerator.Enumerator`.
Bad AOIs become FAILED job records; the handler only raises for infrastructure errors, which
Lambda retries and then sends to the on-failure destination. The embedded run calls the same
function (:mod:`looking_glass.local.embedded`). Imports no TensorFlow.
"""

from __future__ import annotations

import boto3
from aws_lambda_powertools import Logger

from looking_glass.pipeline.enumerator import Enumerator, objects_from_s3_event
from looking_glass.pipeline.launchers import launcher_for
from looking_glass.runtime.resources import DeployedResources
from looking_glass.runtime.settings import EnumeratorSettings

logger = Logger(service="tile-enumerator")


@logger.inject_lambda_context
def handler(event: dict, context) -> dict:
    """Process every AOI object of an S3 event; returns ``{"jobs": [{job_id, status, reason}]}``.

    Bad AOIs become FAILED job records; raises only for infrastructure errors (AWS calls).
    """
    session = boto3.session.Session()
    settings = EnumeratorSettings.from_env()
    enumerator = Enumerator(
        session, DeployedResources.from_env(), settings, launcher_for(settings, session)
    )
    jobs = []
    for obj in objects_from_s3_event(event):
        job = enumerator.process(obj)
        logger.info(
            "aoi processed",
            extra={"job_id": job["job_id"], "status": job["status"], "key": obj.key},
        )
        jobs.append({"job_id": job["job_id"], "status": job["status"], "reason": job.get("reason")})
    return {"jobs": jobs}
