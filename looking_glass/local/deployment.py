"""Where the results commands find a deployment: a CDK stack by name, or the embedded run.

``--stack NAME`` reads the CloudFormation outputs of the stacks ``NAME<suffix>`` for each suffix in
``resources.STACK_SUFFIXES`` (the output keys are ``resources.OUTPUT_*``, which the stacks
declare). Without ``--stack`` the commands use the embedded run that ``looking-glass up`` keeps
running: it writes a small state file (endpoint, resource names, tile URL template, its pid),
by default ``~/.looking-glass/embedded.json`` (``--embedded FILE`` or ``LG_EMBEDDED_STATE``).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import boto3
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

from looking_glass.display import shown
from looking_glass.errors import EXIT_BAD_INPUT, LookingGlassError
from looking_glass.runtime import resources
from looking_glass.runtime.imagery_sources import ImageryRegistry, ImagerySourcesError, parse_sources
from looking_glass.runtime.resources import DeployedResources

STATE_VERSION = 1
ENV_EMBEDDED_STATE = "LG_EMBEDDED_STATE"
STACK_NAME_PATTERN = resources.STACK_NAME_PATTERN  # one rule with the stacks (runtime.resources)

# Stack output -> DeployedResources field; all are required.
REQUIRED_OUTPUTS = {
    resources.OUTPUT_TRIGGER_BUCKET: "trigger_bucket",
    resources.OUTPUT_MASKS_BUCKET: "masks_bucket",
    resources.OUTPUT_RESULTS_TABLE: "results_table",
    resources.OUTPUT_TILE_QUEUE_URL: "tile_queue_url",
    resources.OUTPUT_TILE_DLQ_URL: "tile_dlq_url",
}


class DeploymentError(LookingGlassError, RuntimeError):
    """The deployment cannot be found or reached; the message says why and what to do."""


@dataclass
class Deployment:
    """A deployment the CLI talks to: the stacks in an AWS account, or an embedded run on this
    machine (whose AWS endpoint is ``endpoint_url``), with its resources."""

    kind: str  # "stack" or "embedded"
    name: str  # the stack name, or the state file
    resources: DeployedResources
    session: boto3.session.Session
    endpoint_url: str | None = None
    tile_url_template: str | None = None
    outputs: dict | None = None
    # The imagery sources jobs may name, with their definitions (the embedded run's state file,
    # a stack's ImagerySources output); None where not known (a stack deployed before that output).
    imagery: ImageryRegistry | None = None
    # The embedded run's default source is the synthetic test world (`up` without an unnamed
    # --imagery): `submit` without --imagery then warns when the run registered named sources.
    default_is_synthetic: bool = False
    # The embedded run's `up --model` file as jobs record it (model.identity.file_identity); ""
    # for a stack, or an embedded run of the active or shipped model.
    model: str = ""

    def client(self, service: str, **kwargs):
        """A boto3 client of ``service`` for this deployment (its endpoint for an embedded run)."""
        if self.endpoint_url:
            kwargs.setdefault("endpoint_url", self.endpoint_url)
        return self.session.client(service, **kwargs)

    def data_session(self):
        """A boto3 session (or one that acts as one) whose clients reach this deployment's S3: for
        reading imagery through GDAL's /vsis3/, which takes the endpoint from the session's S3
        client (``looking_glass.imagery.geotiff.gdal_s3_env``): the embedded run's moto server,
        where ``up`` staged its ``s3://`` imagery."""
        return _EndpointSession(self.session, self.endpoint_url) if self.endpoint_url else self.session

    def describe(self) -> str:
        """The deployment in words, for messages (``stack NAME`` or ``embedded run at URL (FILE)``)."""
        if self.kind == "stack":
            return f"stack {self.name}"
        return f"embedded run at {self.endpoint_url} ({self.name})"


class _EndpointSession:
    """A boto3 session whose clients use ``endpoint_url``; everything else (credentials, region)
    is the session's own."""

    def __init__(self, session: boto3.session.Session, endpoint_url: str):
        self._session, self._endpoint_url = session, endpoint_url

    def client(self, service: str, **kwargs):
        kwargs.setdefault("endpoint_url", self._endpoint_url)
        return self._session.client(service, **kwargs)

    def __getattr__(self, name: str):
        return getattr(self._session, name)


# ---- --stack NAME ------------------------------------------------------------------------------
def stack_names(name: str | None) -> list[str]:
    """The CloudFormation stack names of deployment ``name`` (default the default stack name), one
    per suffix; raises :class:`DeploymentError` for a name CloudFormation would refuse."""
    base = name or resources.DEFAULT_STACK_NAME
    if not STACK_NAME_PATTERN.match(base):
        raise DeploymentError(
            f"invalid stack name {base!r}: a CloudFormation name starts with a letter and has only "
            "letters, digits and hyphens"
        )
    return [f"{base}{suffix}" for suffix in resources.STACK_SUFFIXES]


def resolve_stack(name: str | None, session: boto3.session.Session | None = None) -> Deployment:
    """Resources of the deployed stacks ``NAME<suffix>`` from their CloudFormation outputs."""
    names = stack_names(name)
    base = name or resources.DEFAULT_STACK_NAME
    session = session or boto3.session.Session()
    try:
        cfn = session.client("cloudformation")
    except NoRegionError:
        raise DeploymentError("no AWS region configured: set AWS_REGION or AWS_DEFAULT_REGION") from None
    outputs: dict[str, str] = {}
    found: dict[str, str] = {}
    for stack in names:
        try:
            described = cfn.describe_stacks(StackName=stack)["Stacks"]
        except NoCredentialsError:
            raise DeploymentError("no AWS credentials found (configure a profile or AWS_* variables)") from None
        except ClientError as exc:
            message = exc.response["Error"].get("Message", "")
            if exc.response["Error"]["Code"] == "ValidationError" and "does not exist" in message:
                continue
            raise DeploymentError(f"cannot read stack {stack}: {message or exc}") from None
        except BotoCoreError as exc:
            raise DeploymentError(f"cannot reach CloudFormation: {exc}") from None
        for desc in described:
            found[stack] = desc.get("StackStatus", "?")
            for out in desc.get("Outputs", []) or []:
                outputs[out["OutputKey"]] = out["OutputValue"]
    if not found:
        raise DeploymentError(
            f"no stack of deployment {base!r} found in region {cfn.meta.region_name} "
            f"(looked for {', '.join(names)}); deploy with `npx cdk deploy --all` or check --stack"
        )
    missing = [key for key in REQUIRED_OUTPUTS if not outputs.get(key)]
    if missing:
        seen = ", ".join(f"{s} ({status})" for s, status in found.items())
        raise DeploymentError(
            f"deployment {base!r} lacks the stack outputs {', '.join(missing)}; "
            f"stacks found: {seen}. Is the deployment complete and up to date?"
        )
    res = DeployedResources(**{field: outputs[key] for key, field in REQUIRED_OUTPUTS.items()})
    return Deployment("stack", base, res, session, outputs=outputs, imagery=stack_imagery(base, outputs))


def stack_imagery(base: str, outputs: dict[str, str]) -> ImageryRegistry | None:
    """The imagery registry of deployment ``base`` from its ``ImagerySources`` output (the
    cdk.json ``imagery_sources`` and the default source, as its enumerator reads them); None
    for a deployment from before that output (then only a name's form is checked at submit)."""
    raw = outputs.get(resources.OUTPUT_IMAGERY_SOURCES)
    if raw is None:
        return None
    try:
        return ImageryRegistry.from_json(raw, f"stack output {resources.OUTPUT_IMAGERY_SOURCES}")
    except ImagerySourcesError as exc:
        raise DeploymentError(f"deployment {base!r}: {exc}; deploy it again (`npx cdk deploy --all`)") from None


# ---- the embedded run --------------------------------------------------------------------------
def default_state_path() -> Path:
    """The embedded run's state file: ``$LG_EMBEDDED_STATE``, else ``~/.looking-glass/embedded.json``."""
    env = os.environ.get(ENV_EMBEDDED_STATE)
    return Path(env) if env else Path.home() / ".looking-glass" / "embedded.json"


def write_state(path: Path, endpoint_url: str, res: DeployedResources, tile_url_template: str,
                imagery: ImageryRegistry | dict | None = None, default_is_synthetic: bool = False,
                model: str = "") -> dict:
    """Write the embedded run's state file at ``path`` atomically, private to this user (file 0600,
    a directory created here 0700); returns the state written. ``imagery``: the run's registry
    (a dict: its named sources only, the default's definition unknown); ``default_is_synthetic``:
    the default source is the synthetic test world; ``model``: the ``up --model`` file as jobs
    record it (:func:`looking_glass.model.identity.file_identity`; "" for none)."""
    if not isinstance(imagery, ImageryRegistry):
        imagery = ImageryRegistry(dict(imagery or {}))
    state = {
        "version": STATE_VERSION,
        "pid": os.getpid(),
        "endpoint_url": endpoint_url,
        "resources": asdict(res),
        "tile_url_template": tile_url_template,
        "imagery": json.loads(imagery.to_json()),
        "default_is_synthetic": bool(default_is_synthetic),
        "model": model,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    # Private (it names the endpoint and the resources of a run that holds local credentials):
    # the directory 0700 when created here, the file 0600. Written under an unpredictable
    # temporary name in the same directory (mkstemp: O_EXCL, mode 0600, so no other user can
    # plant or pre-create it), then renamed over the state file in one step.
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as tmp:
            tmp.write(json.dumps(state, indent=2) + "\n")
            tmp.flush()
            os.fsync(tmp.fileno())
        os.chmod(tmp_name, 0o600)
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
    return state


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def refuse_second_run(state_path: Path) -> None:
    """Refuse to start an embedded run on ``state_path`` while another live run holds it.

    A second run would overwrite the state file and, when it stops, delete it: the first run's
    jobs (its data lives in memory) could then no longer be reached. A state file of a run that
    is gone, or one that cannot be read, is simply replaced.

    Raises:
        DeploymentError: a live run (another process) holds ``state_path``.
    """
    try:
        state = json.loads(Path(state_path).read_text())
        pid = int(state["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return
    if pid != os.getpid() and _pid_alive(pid):
        raise DeploymentError(
            f"an embedded run is already up (pid {pid}, started {state.get('started_at', '?')}, state file "
            f"{state_path}): stop it first (Ctrl-C in its terminal), or start this one with its own state "
            "file: looking-glass up --embedded /path/other.json ... (and --embedded /path/other.json on the "
            "commands that should use it)"
        )


def embedded_option(state_path: Path) -> str:
    """`` --embedded STATE`` (shell-quoted, with its leading space) that another terminal's
    commands need to reach the run of ``state_path``; "" for the state file they find by
    themselves (``~/.looking-glass/embedded.json``, not moved by ``LG_EMBEDDED_STATE``: another
    terminal need not have that variable set)."""
    import shlex

    home = Path.home() / ".looking-glass" / "embedded.json"
    if Path(state_path).expanduser().resolve() == home.resolve():
        return ""
    return f" --embedded {shlex.quote(str(Path(state_path).expanduser().resolve()))}"


def resolve_embedded(path: Path | None = None) -> Deployment:
    """The embedded run that ``looking-glass up`` keeps running, from its state file."""
    from looking_glass.local.embedded import LOCAL_AWS_ENV

    path = Path(path) if path else default_state_path()
    if not path.is_file():
        raise DeploymentError(
            f"no embedded run ({path} not found): start one with `looking-glass up` in another "
            "terminal, or pass --stack NAME for a deployed stack"
        )
    try:
        state = json.loads(path.read_text())
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"unsupported version {state.get('version')!r}")
        res = DeployedResources(**state["resources"])
        endpoint, pid = str(state["endpoint_url"]), int(state["pid"])
        label = f"{path} imagery"
        imagery = (ImageryRegistry.from_json(state["imagery"], label) if "imagery" in state
                   else ImageryRegistry(parse_sources(state.get("imagery_sources") or {}, label)))  # an older `up`
    except (ValueError, KeyError, TypeError) as exc:  # ImagerySourcesError is a ValueError
        raise DeploymentError(f"embedded state file {path} is not valid: {exc}") from None
    if not _pid_alive(pid):
        raise DeploymentError(
            f"the embedded run of {path} (pid {pid}) is no longer running: start it again with "
            "`looking-glass up` (its data lived in memory and is gone)"
        )
    session = boto3.session.Session(
        aws_access_key_id=LOCAL_AWS_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=LOCAL_AWS_ENV["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=LOCAL_AWS_ENV["AWS_SESSION_TOKEN"],
        region_name=LOCAL_AWS_ENV["AWS_DEFAULT_REGION"],
    )
    return Deployment("embedded", str(path), res, session, endpoint, state.get("tile_url_template"), imagery=imagery,
                      default_is_synthetic=state.get("default_is_synthetic") is True, model=str(state.get("model") or ""))


def resolve(stack: str | None, embedded: str | None) -> Deployment:
    """``--stack NAME`` if given, else the embedded run's state file."""
    if stack is not None and embedded is not None:
        raise DeploymentError("give either --stack or --embedded, not both", exit_code=EXIT_BAD_INPUT)
    if stack is not None:
        return resolve_stack(stack or None)
    return resolve_embedded(Path(embedded) if embedded else None)


# ---- looking-glass up --------------------------------------------------------------------------
# Worker imagery settings the embedded run chooses itself (from --imagery): set in the shell too,
# they would reach every worker beside the run's own and make each one exit at start-up.
SHELL_IMAGERY_VARIABLES = ("LG_IMAGERY_GEOTIFF", "LG_TILE_URL_TEMPLATE", "LG_IMAGERY_SECRET", "LG_IMAGERY_TOKEN_HEADER")


def check_shell_imagery(environ, worker_env: dict[str, str] | None = None) -> None:
    """Refuse (DeploymentError) to start the embedded run while the shell sets the workers'
    imagery variables: `up` picks the imagery itself (``--imagery``), and a second source in the
    workers' environment made every worker exit at start-up, relaunched for ever."""
    found = [k for k in SHELL_IMAGERY_VARIABLES if environ.get(k) and k not in (worker_env or {})]
    if found:
        raise DeploymentError(
            f"{', '.join(found)} set in this shell: the embedded run chooses its workers' imagery "
            "itself; give it as `looking-glass up --imagery SOURCE` (a URL template or a GeoTIFF) "
            f"and unset {', '.join(found)}",
            exit_code=EXIT_BAD_INPUT,
        )


def run_embedded(
    state_path: Path,
    work_dir: Path,
    workers: int = 1,
    ready=None,
    stop_event: threading.Event | None = None,
    poll_s: float = 2.0,
    worker_env: dict[str, str] | None = None,
    imagery=None,
    imagery_sources: dict | None = None,
    imagery_attribution: str | None = None,
) -> None:
    """Keep an embedded run up until SIGINT/SIGTERM (or ``stop_event``), with its state file.

    Besides the enumerator (started by uploads), it starts local workers whenever the tile
    queue holds work and none is running: that is how `retry` gets workers here. After
    MAX_FAILURES_IN_A_ROW workers failed in a row it starts none for the queue until a job is
    retried or another model is made active (:meth:`EmbeddedStack.new_chance`).
    ``imagery`` (a validated :class:`looking_glass.local.inputs.Imagery`; None: the synthetic
    world) is what the workers read; the state file's tile URL template serves it (for a
    GeoTIFF, a local tile server of the image). ``worker_env`` adds worker settings, e.g.
    ``LG_MODEL_PATH``. ``imagery_sources``: the named sources of ``up --imagery NAME=SOURCE``;
    ``imagery_attribution``: the default source's credit on maps (``up --attribution default=TEXT``).
    """
    from looking_glass.local.embedded import EmbeddedStack
    from looking_glass.model.identity import file_identity
    from looking_glass.pipeline.store import utc_now

    check_shell_imagery(os.environ, worker_env)
    refuse_second_run(state_path)
    stop = stop_event or threading.Event()
    if stop_event is None and threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
    stack = EmbeddedStack(work_dir, workers=workers, worker_env=worker_env, imagery=imagery,
                          imagery_sources=imagery_sources, imagery_attribution=imagery_attribution)
    try:
        stack.start()
        model = (worker_env or {}).get("LG_MODEL_PATH")
        state = write_state(state_path, stack.endpoint_url, stack.resources, stack.tile_url_template,
                            stack.imagery_registry, default_is_synthetic=imagery is None,
                            model=file_identity(model) if model else "")
        if ready:
            ready(state)
        sqs = stack.session.client("sqs")
        gave_up: tuple[str, str] | None = None  # (when, the active model then) of the last give-up
        while not stop.wait(poll_s):
            attrs = sqs.get_queue_attributes(
                QueueUrl=stack.resources.tile_queue_url, AttributeNames=["ApproximateNumberOfMessages"]
            )["Attributes"]
            if stack.launcher.gave_up:
                # A crash loop: no more relaunching (the jobs waiting were failed with the reason)
                # until something could make workers start: a `retry`, another active model (a
                # new upload starts its own workers).
                if gave_up is None:
                    print(f"workers failed {stack.launcher.failures_in_a_row} times in a row; not starting more "
                          f"until a retry or another model (models use): {shown(stack.launcher.last_failure)}",
                          file=sys.stderr, flush=True)
                    gave_up = (utc_now(), stack.active_model())
                    continue
                why = stack.new_chance(*gave_up)
                if why is None:
                    continue
                print(f"{why}: starting workers again", file=sys.stderr, flush=True)
                stack.launcher.new_chance()
            gave_up = None
            if int(attrs["ApproximateNumberOfMessages"]) > 0 and stack.launcher.running() == 0:
                stack.launcher.launch("queue", workers)
    finally:
        try:
            if json.loads(state_path.read_text()).get("pid") == os.getpid():
                state_path.unlink()
        except (OSError, ValueError):
            pass
        stack.stop()
