"""Work units: the SQS message that carries a batch of tiles from the enumerator to a worker.

One message holds runs of consecutive tiles per row (``[y, x_start, x_stop]``, half-open), sized
to about one inference batch, so a million tiles cost a few hundred SQS requests, not a million.

The body (schema ``v`` 1) is ``{"v": 1, "job_id": ..., "z": 18, "runs": [[y, x0, x1], ...]}`` with
two optional members: ``imagery`` (the registered source's name; absent: the default) and
``digest`` (16 hex digits, :attr:`looking_glass.runtime.imagery_sources.ImagerySource.digest` of
the definition the job was enumerated against, so a worker whose registry defines the name
otherwise fails those tiles instead of reading other imagery under the same job). A message
without ``digest`` (from an enumerator before it, or a deployment that does not know the
default's definition) is accepted as before, unchecked.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass

import numpy as np

from looking_glass.runtime.defaults import MAX_TILES_PER_MESSAGE
from looking_glass.runtime.imagery_sources import IMAGERY_NAME

SCHEMA_VERSION = 1
JOB_ID_PATTERN = re.compile(r"^[0-9a-f]{16,64}$")
IMAGERY_DIGEST_PATTERN = re.compile(r"^[0-9a-f]{16}$")  # ImagerySource.digest


class MalformedMessage(ValueError):
    """A message that no retry can fix: it goes to the dead-letter queue with this reason."""


@dataclass(frozen=True)
class WorkUnit:
    """One SQS message: tiles of one job at ``zoom`` as runs ``(y, x_start, x_stop)``, half-open."""

    job_id: str
    zoom: int
    runs: tuple[tuple[int, int, int], ...]
    # The registered imagery source's name (runtime.imagery_sources); None: the default.
    imagery: str | None = None
    # The digest of that source's definition when the job was enumerated (None: not checked).
    imagery_digest: str | None = None

    @property
    def tile_count(self) -> int:
        """Number of tiles in the unit."""
        return sum(x1 - x0 for _, x0, x1 in self.runs)

    def tiles(self) -> list[tuple[int, int, int]]:
        """Every tile as (x, y, zoom), run by run."""
        return [(x, y, self.zoom) for y, x0, x1 in self.runs for x in range(x0, x1)]

    @property
    def unit_id(self) -> str:
        """A deterministic id of the unit (16 hex digits of a SHA-256 of its zoom and runs; the job
        is its partition): its ledger and result object are named by it, so every delivery of
        the same unit, by any worker, finds them."""
        runs = ";".join(f"{y},{x0},{x1}" for y, x0, x1 in self.runs)
        return hashlib.sha256(f"{self.job_id}/{self.zoom}/{runs}".encode()).hexdigest()[:16]

    def to_json(self) -> str:
        """The message body (compact JSON with the schema version ``v``)."""
        doc = {"v": SCHEMA_VERSION, "job_id": self.job_id, "z": self.zoom, "runs": self.runs}
        if self.imagery:
            doc["imagery"] = self.imagery
        if self.imagery_digest:
            doc["digest"] = self.imagery_digest
        return json.dumps(doc, separators=(",", ":"))


def pack_runs(job_id: str, zoom: int, runs: np.ndarray, tiles_per_message: int, imagery: str | None = None,
              imagery_digest: str | None = None):
    """Yield work units of at most ``tiles_per_message`` tiles, splitting long runs, each naming
    the ``imagery`` source (None: the deployment's default) and the ``imagery_digest`` of its
    definition (None or "": unchecked by the workers)."""
    if tiles_per_message < 1:
        raise ValueError("tiles_per_message must be at least 1")
    batch: list[tuple[int, int, int]] = []
    room = tiles_per_message
    for y, x0, x1 in runs.tolist():
        while x0 < x1:
            take = min(room, x1 - x0)
            batch.append((y, x0, x0 + take))
            x0 += take
            room -= take
            if room == 0:
                yield WorkUnit(job_id, zoom, tuple(batch), imagery, imagery_digest or None)
                batch, room = [], tiles_per_message
    if batch:
        yield WorkUnit(job_id, zoom, tuple(batch), imagery, imagery_digest or None)


def parse_work_unit(body: str) -> WorkUnit:
    """Validate a message body; raise ``MalformedMessage`` with the reason."""
    try:
        doc = json.loads(body)
    except (json.JSONDecodeError, TypeError) as exc:
        raise MalformedMessage(f"message body is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise MalformedMessage("message body is not a JSON object")
    if doc.get("v") != SCHEMA_VERSION:
        raise MalformedMessage(f"unsupported work unit version {doc.get('v')!r}")
    job_id = doc.get("job_id")
    if not isinstance(job_id, str) or not JOB_ID_PATTERN.match(job_id):
        raise MalformedMessage(f"invalid job_id {job_id!r}")
    zoom = doc.get("z")
    if not isinstance(zoom, int) or isinstance(zoom, bool) or not 0 <= zoom <= 24:
        raise MalformedMessage(f"invalid zoom {zoom!r}")
    runs = doc.get("runs")
    if not isinstance(runs, list) or not runs:
        raise MalformedMessage("runs must be a non-empty list")
    n = 2**zoom
    checked = []
    for run in runs:
        if (
            not isinstance(run, list)
            or len(run) != 3
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in run)
        ):
            raise MalformedMessage(f"run {run!r} is not [y, x_start, x_stop] integers")
        y, x0, x1 = run
        if not (0 <= y < n and 0 <= x0 < x1 <= n):
            raise MalformedMessage(f"run {run!r} is outside zoom {zoom}")
        checked.append((y, x0, x1))
    imagery = doc.get("imagery")
    if imagery is not None and (not isinstance(imagery, str) or not IMAGERY_NAME.match(imagery)):
        raise MalformedMessage(f"invalid imagery source name {str(imagery)[:100]!r}")
    digest = doc.get("digest")
    if digest is not None and (not isinstance(digest, str) or not IMAGERY_DIGEST_PATTERN.match(digest)):
        raise MalformedMessage(f"invalid imagery digest {str(digest)[:100]!r} (16 hex digits)")
    unit = WorkUnit(job_id, zoom, tuple(checked), imagery, digest)
    if unit.tile_count > MAX_TILES_PER_MESSAGE:
        raise MalformedMessage(f"{unit.tile_count} tiles exceed {MAX_TILES_PER_MESSAGE} per message")
    return unit
