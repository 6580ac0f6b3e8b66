"""Runtime settings of the enumerator and the worker, read from the environment and validated.

Both the CDK stacks (Lambda environment, Batch job definition) and the embedded run set these
variables; a bad value stops the process at start-up with a message naming the variable.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import urlsplit

from .resources import TILE_QUEUE_VISIBILITY_TIMEOUT_S
from .workunits import DEFAULT_TILES_PER_MESSAGE, MAX_TILES_PER_MESSAGE


class SettingsError(ValueError):
    pass


def _int(env, name: str, default: int, lo: int, hi: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not an integer") from None
    if not lo <= value <= hi:
        raise SettingsError(f"{name}={value} is outside [{lo}, {hi}]")
    return value


def _float(env, name: str, default: float, lo: float, hi: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number") from None
    if not lo <= value <= hi:
        raise SettingsError(f"{name}={value} is outside [{lo}, {hi}]")
    return value


def _bool(env, name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in ("1", "true", "yes"):
        return True
    if raw.lower() in ("0", "false", "no"):
        return False
    raise SettingsError(f"{name}={raw!r} is not a boolean (true/false)")


def _choice(env, name: str, default: str, choices: tuple[str, ...]) -> str:
    value = env.get(name) or default
    if value not in choices:
        raise SettingsError(f"{name}={value!r} is not one of {', '.join(choices)}")
    return value


def validate_tile_url_template(template: str) -> str:
    parts = urlsplit(template)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SettingsError(f"tile URL template {template!r} is not an http(s) URL")
    for field in ("{z}", "{x}", "{y}"):
        if field not in template:
            raise SettingsError(f"tile URL template {template!r} lacks {field}")
    return template


@dataclass(frozen=True)
class EnumeratorSettings:
    tiles_per_message: int
    max_tiles_per_job: int
    launcher: str  # "batch" in the cloud, "local" in the embedded run
    max_workers: int
    tiles_per_worker: int
    batch_job_queue: str
    batch_job_definition: str
    enqueue_threads: int = 16

    @classmethod
    def from_env(cls, environ=None) -> "EnumeratorSettings":
        env = os.environ if environ is None else environ
        launcher = _choice(env, "LG_WORKER_LAUNCHER", "batch", ("batch", "local"))
        settings = cls(
            tiles_per_message=_int(
                env, "LG_TILES_PER_MESSAGE", DEFAULT_TILES_PER_MESSAGE, 1, MAX_TILES_PER_MESSAGE
            ),
            max_tiles_per_job=_int(env, "LG_MAX_TILES_PER_JOB", 5_000_000, 1, 10**10),
            launcher=launcher,
            max_workers=_int(env, "LG_MAX_WORKERS", 50, 1, 10_000),
            tiles_per_worker=_int(env, "LG_TILES_PER_WORKER", 20_000, 1, 10**9),
            batch_job_queue=env.get("LG_BATCH_JOB_QUEUE", ""),
            batch_job_definition=env.get("LG_BATCH_JOB_DEFINITION", ""),
            enqueue_threads=_int(env, "LG_ENQUEUE_THREADS", 16, 1, 128),
        )
        if launcher == "batch" and not (settings.batch_job_queue and settings.batch_job_definition):
            raise SettingsError("LG_BATCH_JOB_QUEUE and LG_BATCH_JOB_DEFINITION are required")
        return settings

    def workers_for(self, tiles: int) -> int:
        """Worker count sized to the work: one per ``tiles_per_worker`` tiles, capped."""
        return max(1, min(self.max_workers, -(-tiles // self.tiles_per_worker)))


@dataclass(frozen=True)
class WorkerSettings:
    tile_url_template: str
    model_path: str  # "" means: the model shipped in the repo, or an untrained one
    batch_size: int
    threshold: float
    download_concurrency: int
    download_timeout_s: float
    download_retries: int
    write_masks: bool
    idle_exit_s: float  # exit after the queue has stayed empty this long
    poll_wait_s: int
    visibility_timeout_s: int = TILE_QUEUE_VISIBILITY_TIMEOUT_S  # what the heartbeat renews

    @classmethod
    def from_env(cls, environ=None) -> "WorkerSettings":
        env = os.environ if environ is None else environ
        template = env.get("LG_TILE_URL_TEMPLATE", "")
        if not template:
            raise SettingsError("LG_TILE_URL_TEMPLATE is required")
        return cls(
            tile_url_template=validate_tile_url_template(template),
            model_path=env.get("LG_MODEL_PATH", ""),
            batch_size=_int(env, "LG_BATCH_SIZE", 32, 1, 1024),
            threshold=_float(env, "LG_THRESHOLD", 0.5, 0.0, 1.0),
            download_concurrency=_int(env, "LG_DOWNLOAD_CONCURRENCY", 16, 1, 256),
            download_timeout_s=_float(env, "LG_DOWNLOAD_TIMEOUT_S", 10.0, 0.1, 300.0),
            download_retries=_int(env, "LG_DOWNLOAD_RETRIES", 3, 0, 10),
            write_masks=_bool(env, "LG_WRITE_MASKS", True),
            idle_exit_s=_float(env, "LG_IDLE_EXIT_S", 60.0, 0.0, 3600.0),
            poll_wait_s=_int(env, "LG_POLL_WAIT_S", 20, 0, 20),
            visibility_timeout_s=_int(
                env, "LG_VISIBILITY_TIMEOUT_S", TILE_QUEUE_VISIBILITY_TIMEOUT_S, 30, 43200
            ),
        )
