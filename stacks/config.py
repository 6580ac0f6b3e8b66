"""Deployment configuration: the CDK context (``cdk.json`` or ``cdk synth -c key=value``) parsed
into a typed, validated dataclass.

Context from ``cdk.json`` arrives typed (numbers, booleans, lists); context from the command line
arrives as strings, so every parser accepts both. A bad value raises ``ConfigError`` with a message
that names the context key, before any resource is built.

The runtime settings that end up in the Lambda and Batch environments are checked once more by
``looking_glass.runtime.settings`` itself at synth time (see ``stacks.ingest`` / ``stacks.inference``), so
a value this module lets through but the code would reject still fails ``cdk synth``.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from looking_glass.grid import ZOOM
from looking_glass.runtime import resources
from looking_glass.runtime.defaults import (
    DEFAULT_MAX_TILES_PER_JOB,
    DEFAULT_TILES_PER_MESSAGE,
    DEFAULT_TILES_PER_WORKER,
    MAX_TILES_PER_MESSAGE,
)
from looking_glass.runtime.imagery_sources import (
    DEFAULT_IMAGERY_NAME,
    MOSAIC_DOCUMENT_SUFFIXES,
    ImagerySourcesError,
    check_source_name,
    parse_sources,
)
from looking_glass.runtime.parsing import ParseError, Parsers
from looking_glass.runtime.resources import DEFAULT_STACK_NAME
from looking_glass.runtime.settings import SettingsError, validate_geotiff_source, validate_tile_url_template

# Fallbacks for keys missing from the context. cdk.json lists every key with its value so the
# knobs are discoverable there; these only matter when the app is built without cdk.json.
DEFAULTS: dict[str, Any] = {
    "stack_name": DEFAULT_STACK_NAME,
    "tile_url_template": "https://tiles.example.com/{z}/{x}/{y}.png",
    "imagery_secret_name": "",
    "imagery_geotiff": "",
    "imagery_bands": "",
    "imagery_sources": {},
    "default_imagery": "",
    "imagery_attribution": "",
    "zoom": ZOOM,
    "max_vcpus": 64,
    "instance_types": ["g4dn.xlarge", "g5.xlarge"],
    "spot": True,
    "worker_vcpus": 4,
    "worker_memory_mib": 14336,
    "worker_timeout_minutes": 360,
    "worker_retry_attempts": 3,
    "worker_subnets": "private",
    "nat_gateways": 1,
    "worker_image": "",
    "model_s3_uri": "",
    "tiles_per_message": DEFAULT_TILES_PER_MESSAGE,
    "max_tiles_per_job": DEFAULT_MAX_TILES_PER_JOB,
    "tiles_per_worker": DEFAULT_TILES_PER_WORKER,
    "max_workers": None,
    "enumerator_reserved_concurrency": 5,
    "log_retention_days": 30,
    "alarm_topic_arn": "",
    "training_image": "",
    "training_instance_type": "ml.g5.xlarge",
    "training_volume_gb": 50,
    "training_spot": True,
    "training_max_runtime_hours": 24,
    "training_max_wait_hours": 48,
    # Encryption at rest (stacks.constructs.encryption)
    "encryption": "aws-managed",
    "kms_key_arn": "",
    # Hardening
    "worker_root_volume_gb": 100,
    "training_vpc": False,
    "training_network_isolation": False,
}
# Context keys that belong to CDK, not to this app: feature flags ("@aws-cdk/..."), keys the CLI
# sets ("aws:cdk:..."), cached look-ups ("availability-zones:account=...") all have one of these
# characters; cdk.context.json may also hold a few plain ones.
_CDK_KEY = re.compile(r"[@:/]")
CDK_PLAIN_KEYS = frozenset({"acknowledged-issue-numbers"})
# encryption: aws-managed (AWS owned/managed keys, no key to manage) or kms (one customer-managed
# key: created by the stacks with rotation on, or the user's own named by kms_key_arn).
ENCRYPTION_MODES = ("aws-managed", "kms")
_KMS_KEY_ARN = re.compile(
    r"^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|mrk-[0-9a-f]{32})$"
)

# Retention periods CloudWatch Logs accepts, in days, with their aws_logs.RetentionDays names.
LOG_RETENTION_DAYS = {
    1: "ONE_DAY", 3: "THREE_DAYS", 5: "FIVE_DAYS", 7: "ONE_WEEK", 14: "TWO_WEEKS",
    30: "ONE_MONTH", 60: "TWO_MONTHS", 90: "THREE_MONTHS", 120: "FOUR_MONTHS",
    150: "FIVE_MONTHS", 180: "SIX_MONTHS", 365: "ONE_YEAR", 400: "THIRTEEN_MONTHS",
    545: "EIGHTEEN_MONTHS", 731: "TWO_YEARS", 1096: "THREE_YEARS", 1827: "FIVE_YEARS",
    2192: "SIX_YEARS", 2557: "SEVEN_YEARS", 2922: "EIGHT_YEARS", 3288: "NINE_YEARS",
    3653: "TEN_YEARS",
}
# private: no public IPs, internet (the tile server) through NAT gateways in public subnets.
# isolated: no internet route at all, AWS services through VPC endpoints; tiles must come from
#   an AWS endpoint reachable that way (S3). public: public IPs, no NAT, no inbound rules.
WORKER_SUBNETS = ("private", "isolated", "public")
# Hosts an isolated subnet can reach (through the S3 gateway endpoint): AWS service endpoints.
_AWS_HOST = re.compile(r"(^|\.)amazonaws\.com(\.cn)?$")
_STACK_NAME = resources.STACK_NAME_PATTERN  # the one rule (CloudFormation names, minus the suffixes)
# Secrets Manager secret names: letters, digits and /_+=.@- (up to 512 characters).
_SECRET_NAME = re.compile(r"^[A-Za-z0-9/_+=.@-]{1,512}$")
_SNS_TOPIC_ARN = re.compile(r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}$")

_INSTANCE_TYPE = re.compile(r"^[a-z][a-z0-9-]*\.[a-z0-9]+$")
# Instance families with NVIDIA GPUs that the ECS GPU AMI supports (the job asks for one GPU).
_GPU_FAMILY = re.compile(r"^(g4dn|g5|g6|g6e|gr6|g5g|p3|p3dn|p4d|p4de|p5|p5e|p5en)\.")
_IMAGE_URI = re.compile(r"^[a-z0-9][a-z0-9._\-/:@]*[a-z0-9]$")


class ConfigError(ParseError):
    """A context value is invalid. The message starts with the context key."""


def unknown_context_keys(keys: Iterable[str]) -> list[str]:
    """The keys among ``keys`` that look like this app's (no ``@``, ``:`` or ``/``, not one of
    ``CDK_PLAIN_KEYS``) but are not settings it knows (``DEFAULTS``), sorted."""
    return sorted(
        key for key in keys
        if key not in DEFAULTS and key not in CDK_PLAIN_KEYS and not _CDK_KEY.search(key)
    )


def check_context_keys(keys: Iterable[str]) -> None:
    """Refuse context keys the app does not know (a typo such as ``max_vcpu`` would otherwise be
    ignored silently, and the default used), naming the known ones."""
    unknown = unknown_context_keys(keys)
    if not unknown:
        return
    hints = []
    for key in unknown:
        close = difflib.get_close_matches(key, DEFAULTS, n=1)
        hints.append(f"{key} (did you mean {close[0]}?)" if close else key)
    raise ConfigError(
        f"unknown context key{'s' if len(unknown) > 1 else ''} {', '.join(hints)} in cdk.json or "
        f"-c; the known keys are: {', '.join(sorted(DEFAULTS))}"
    )


# The context's typed parsers (looking_glass.runtime.parsing): "KEY=VALUE is not ..." messages,
# raised as ConfigError. Context from cdk.json arrives typed, from -c key=value as strings: both parse.
_CONTEXT = Parsers(ConfigError)
_int = _CONTEXT.integer  # (key, raw, lo, hi); never a boolean
_bool = _CONTEXT.boolean  # (key, raw); true/false, 1/0, yes/no
_str = _CONTEXT.text  # (key, raw); stripped, None is ""
_str_list = _CONTEXT.text_list  # (key, raw); a list, or "a,b"
_bands = _CONTEXT.bands  # (key, raw); [3, 2, 1], "3,2,1" or one band; "" or None: None
_S3_URI = re.compile(r"^s3://[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]/\S+$")


def _s3_uri(key: str, raw: Any) -> str:
    return _CONTEXT.matching(key, _str(key, raw), _S3_URI, "an s3://bucket/key URI")


def _image(key: str, raw: Any) -> str:
    return _CONTEXT.matching(key, _str(key, raw), _IMAGE_URI, "a container image reference")


@dataclass(frozen=True)
class DeploymentConfig:
    """The validated deployment settings (one field per context key of ``DEFAULTS``); build it
    with :meth:`from_context`, which raises :class:`ConfigError` naming the first bad key."""

    stack_name: str  # the stacks are <stack_name><suffix> (resources.STACK_SUFFIXES)
    tile_url_template: str  # "" when the imagery is a GeoTIFF (imagery_geotiff)
    imagery_secret_name: str  # "" none; else a Secrets Manager secret the worker may read
    imagery_geotiff: str  # "" none; else s3://bucket/key.tif, read in place by the workers
    imagery_bands: tuple[int, ...] | None  # the GeoTIFF's bands as R,G,B (or one grey band)
    zoom: int  # the tile zoom; only looking_glass.grid.ZOOM (18) is supported
    # Batch compute environment
    max_vcpus: int
    instance_types: tuple[str, ...]
    spot: bool
    # One worker = one Batch job (array child) on one GPU.
    worker_vcpus: int
    worker_memory_mib: int
    worker_timeout_minutes: int
    worker_retry_attempts: int
    worker_subnets: str  # see WORKER_SUBNETS
    nat_gateways: int  # with worker_subnets=private: 1 (cheaper) or one per AZ (2)
    worker_image: str  # "" builds batch_jobs/Dockerfile as an asset; else an image URI
    model_s3_uri: str  # "" uses the model shipped in the image
    # Enumerator (Lambda)
    tiles_per_message: int
    max_tiles_per_job: int
    tiles_per_worker: int
    max_workers: int
    enumerator_reserved_concurrency: int  # 0: none (accounts at the default limit of 10)
    log_retention_days: int
    alarm_topic_arn: str  # "" no alarm actions; else an SNS topic every alarm notifies
    # Training (SageMaker via Step Functions)
    training_image: str
    training_instance_type: str  # SageMaker form, e.g. ml.g5.xlarge
    training_volume_gb: int
    training_spot: bool
    training_max_runtime_hours: int
    training_max_wait_hours: int
    # Encryption at rest and hardening
    encryption: str  # see ENCRYPTION_MODES
    kms_key_arn: str  # "" the stacks create the key (encryption=kms); else the user's own key
    worker_root_volume_gb: int  # the Batch instances' encrypted root volume (AMI + worker image)
    training_vpc: bool  # the training job in a VPC of its own (no internet route, S3 endpoint)
    training_network_isolation: bool  # the training container has no network access at all
    # Named imagery sources jobs choose with `submit --imagery NAME` (runtime.imagery_sources),
    # and the name of the single source above (tile_url_template / imagery_geotiff).
    imagery_sources: dict = field(default_factory=dict)
    default_imagery: str = DEFAULT_IMAGERY_NAME
    imagery_attribution: str = ""  # what maps credit for that source ("": its name)

    def imagery_objects(self) -> list[str]:
        """The S3 objects the workers read imagery from, as ``bucket/key`` (IAM resource
        patterns): each GeoTIFF named, and for a mosaic document (.vrt/.json/.geojson)
        everything under its folder (the images it names, relative to it)."""
        specs = [self.imagery_geotiff] if self.imagery_geotiff else []
        specs += [s.source for s in self.imagery_sources.values() if not s.is_template]
        arns = []
        for spec in specs:
            for part in (p.strip() for p in spec.split(",")):
                bucket, _, key = part[len("s3://"):].partition("/")
                if key.lower().endswith(MOSAIC_DOCUMENT_SUFFIXES):
                    key = key.rsplit("/", 1)[0] + "/*" if "/" in key else "*"
                arns.append(f"{bucket}/{key}")
        return list(dict.fromkeys(arns))

    @property
    def kms(self) -> bool:
        """True when the stores use a customer-managed key (``encryption=kms``)."""
        return self.encryption == "kms"

    @property
    def log_retention(self):
        """``log_retention_days`` as an ``aws_logs.RetentionDays``."""
        from aws_cdk import aws_logs

        return aws_logs.RetentionDays[LOG_RETENTION_DAYS[self.log_retention_days]]

    @property
    def training_ec2_instance_type(self) -> str:
        """The instance type without the ``ml.`` prefix (the CDK task adds it back)."""
        return self.training_instance_type.removeprefix("ml.")

    @classmethod
    def from_context(cls, get: Callable[[str], Any] | Mapping[str, Any]) -> DeploymentConfig:
        """Parse from ``node.try_get_context`` (or a plain mapping, for tests)."""
        if isinstance(get, Mapping):
            check_context_keys(get)
        lookup = get.get if isinstance(get, Mapping) else get

        def raw(key: str) -> Any:
            value = lookup(key)
            return DEFAULTS[key] if value is None else value

        stack_name = _str("stack_name", raw("stack_name"))
        if not _STACK_NAME.match(stack_name):
            raise ConfigError(
                f"stack_name={stack_name!r} is not a CloudFormation stack name prefix (a letter, "
                f"then letters, digits or hyphens, at most {resources.STACK_NAME_MAX})"
            )
        template, geotiff, bands, secret_name = _imagery(raw)
        imagery_sources, default_imagery = _imagery_sources(raw, secret_name)
        zoom = _int("zoom", raw("zoom"), 0, 24)
        if zoom != ZOOM:
            raise ConfigError(
                f"zoom={zoom} is not supported: the cover, the per-pixel area and the model are "
                f"built for zoom-{ZOOM} tiles (looking_glass.grid.ZOOM)"
            )
        alarm_topic_arn = _str("alarm_topic_arn", raw("alarm_topic_arn"))
        if alarm_topic_arn and not _SNS_TOPIC_ARN.match(alarm_topic_arn):
            raise ConfigError(f"alarm_topic_arn={alarm_topic_arn!r} is not an SNS topic ARN")
        instance_types = _instance_types(raw)
        worker_vcpus, max_vcpus, max_workers = _worker_capacity(raw, lookup)
        worker_subnets, nat_gateways = _network(raw, template)
        log_retention = _int("log_retention_days", raw("log_retention_days"), 1, 3653)
        if log_retention not in LOG_RETENTION_DAYS:
            raise ConfigError(
                f"log_retention_days={log_retention} is not a CloudWatch Logs retention "
                f"({', '.join(map(str, LOG_RETENTION_DAYS))})"
            )
        training_instance_type, max_runtime, max_wait, training_spot = _training(raw)
        encryption, kms_key_arn = _encryption(raw)
        if secret_name and template and urlsplit(template).scheme != "https":
            raise ConfigError(
                "imagery_secret_name: the imagery token is only sent over HTTPS; "
                "tile_url_template must start with https://"
            )
        training_vpc = _bool("training_vpc", raw("training_vpc"))
        training_network_isolation = _bool("training_network_isolation", raw("training_network_isolation"))

        return cls(
            stack_name=stack_name,
            tile_url_template=template,
            imagery_secret_name=secret_name,
            imagery_geotiff=geotiff,
            imagery_bands=bands,
            zoom=zoom,
            max_vcpus=max_vcpus,
            instance_types=tuple(instance_types),
            spot=_bool("spot", raw("spot")),
            worker_vcpus=worker_vcpus,
            worker_memory_mib=_int("worker_memory_mib", raw("worker_memory_mib"), 1024, 2_000_000),
            worker_timeout_minutes=_int("worker_timeout_minutes", raw("worker_timeout_minutes"), 5, 14 * 24 * 60),
            worker_retry_attempts=_int("worker_retry_attempts", raw("worker_retry_attempts"), 1, 10),
            worker_subnets=worker_subnets,
            nat_gateways=nat_gateways,
            worker_image=_image("worker_image", raw("worker_image")),
            model_s3_uri=_s3_uri("model_s3_uri", raw("model_s3_uri")),
            tiles_per_message=_int("tiles_per_message", raw("tiles_per_message"), 1, MAX_TILES_PER_MESSAGE),
            max_tiles_per_job=_int("max_tiles_per_job", raw("max_tiles_per_job"), 1, 10**10),
            tiles_per_worker=_int("tiles_per_worker", raw("tiles_per_worker"), 1, 10**9),
            max_workers=max_workers,
            enumerator_reserved_concurrency=_int(
                "enumerator_reserved_concurrency", raw("enumerator_reserved_concurrency"), 0, 1000
            ),
            log_retention_days=log_retention,
            alarm_topic_arn=alarm_topic_arn,
            training_image=_image("training_image", raw("training_image")),
            training_instance_type=training_instance_type,
            training_volume_gb=_int("training_volume_gb", raw("training_volume_gb"), 1, 16_384),
            training_spot=training_spot,
            training_max_runtime_hours=max_runtime,
            training_max_wait_hours=max_wait,
            encryption=encryption,
            kms_key_arn=kms_key_arn,
            worker_root_volume_gb=_int("worker_root_volume_gb", raw("worker_root_volume_gb"), 30, 16_384),
            training_vpc=training_vpc,
            training_network_isolation=training_network_isolation,
            imagery_sources=imagery_sources,
            default_imagery=default_imagery,
            imagery_attribution=_str("imagery_attribution", raw("imagery_attribution")),  # checked: environment
        )


# ---- the groups of settings from_context parses, in the order it checks them ------------------
# ``raw(key)``: the context value of ``key``, or its default (``DEFAULTS``).


def _imagery(raw: Callable[[str], Any]) -> tuple[str, str, tuple[int, ...] | None, str]:
    """(tile_url_template, imagery_geotiff, imagery_bands, imagery_secret_name): exactly one
    source, checked as the workers check it; bands only for a GeoTIFF, a secret only for tiles."""
    template = _str("tile_url_template", raw("tile_url_template"))
    geotiff = _s3_uri("imagery_geotiff", raw("imagery_geotiff"))
    if bool(template) == bool(geotiff):
        raise ConfigError(
            "set exactly one imagery source: tile_url_template (an XYZ/TMS URL) or "
            "imagery_geotiff (s3://bucket/key.tif); to use a GeoTIFF pass -c tile_url_template="
        )
    if geotiff and any(not p.strip().startswith("s3://") for p in geotiff.split(",")):
        raise ConfigError(f"imagery_geotiff: every image of a list must be an s3:// URI ({geotiff})")
    try:
        if template:
            validate_tile_url_template(template)
        else:
            validate_geotiff_source(geotiff)
    except SettingsError as exc:
        raise ConfigError(f"{'tile_url_template' if template else 'imagery_geotiff'}: {exc}") from None
    bands = _bands("imagery_bands", raw("imagery_bands"))
    if bands is not None and not geotiff:
        raise ConfigError("imagery_bands applies to imagery_geotiff only")
    secret_name = _str("imagery_secret_name", raw("imagery_secret_name"))
    if secret_name and not _SECRET_NAME.match(secret_name):
        raise ConfigError(
            f"imagery_secret_name={secret_name!r} is not a Secrets Manager secret name"
        )
    if secret_name and geotiff:
        raise ConfigError(
            "imagery_secret_name applies to tile_url_template only (the workers read "
            "imagery_geotiff with their own role)"
        )
    return template, geotiff, bands, secret_name


def _imagery_sources(raw: Callable[[str], Any], secret_name: str) -> tuple[dict, str]:
    """(``imagery_sources`` checked as the workers check them, ``default_imagery``: the name of
    the tile_url_template/imagery_geotiff source). Registered GeoTIFFs must be on S3 (workers
    read nothing else); a template with {token} needs imagery_secret_name."""
    value = raw("imagery_sources")
    try:
        sources = parse_sources(value if value not in ("", None) else None, "imagery_sources")
    except ImagerySourcesError as exc:
        raise ConfigError(str(exc)) from None
    for src in sources.values():
        if not src.is_template and any(not p.strip().startswith("s3://") for p in src.source.split(",")):
            raise ConfigError(f"imagery_sources: {src.name!r}: deployed workers read GeoTIFFs from s3:// only ({src.source})")
        if src.is_template and "{token}" in src.source and not secret_name:
            raise ConfigError(f"imagery_sources: {src.name!r} has {{token}} but imagery_secret_name is not set")
        if src.is_template and secret_name and "{token}" in src.source and urlsplit(src.source).scheme != "https":
            raise ConfigError(f"imagery_sources: {src.name!r}: the imagery token is only sent over HTTPS")
    default = _str("default_imagery", raw("default_imagery")) or DEFAULT_IMAGERY_NAME
    try:
        check_source_name(default, "default_imagery")
    except ImagerySourcesError as exc:
        raise ConfigError(str(exc)) from None
    if default in sources:
        raise ConfigError(
            f"default_imagery={default!r} is also a name in imagery_sources: default_imagery names the "
            "tile_url_template / imagery_geotiff source"
        )
    return sources, default


def _instance_types(raw: Callable[[str], Any]) -> list[str]:
    """``instance_types``: EC2 instance types of NVIDIA GPU families."""
    instance_types = _str_list("instance_types", raw("instance_types"))
    for itype in instance_types:
        if not _INSTANCE_TYPE.match(itype):
            raise ConfigError(f"instance_types: {itype!r} is not an EC2 instance type")
        if not _GPU_FAMILY.match(itype):
            raise ConfigError(
                f"instance_types: {itype!r} has no NVIDIA GPU (the worker job asks for one)"
            )
    return instance_types


def _worker_capacity(raw: Callable[[str], Any], lookup: Callable[[str], Any]) -> tuple[int, int, int]:
    """(worker_vcpus, max_vcpus, max_workers); ``max_workers`` unset or "": as many workers as
    ``max_vcpus`` holds (at least 1)."""
    worker_vcpus = _int("worker_vcpus", raw("worker_vcpus"), 1, 192)
    max_vcpus = _int("max_vcpus", raw("max_vcpus"), 1, 100_000)
    if max_vcpus < worker_vcpus:
        raise ConfigError(
            f"max_vcpus={max_vcpus} is below worker_vcpus={worker_vcpus}: no job could run"
        )
    # Workers that can run at once; more only wait in the Batch queue.
    max_workers_raw = lookup("max_workers")
    max_workers = (
        max(1, max_vcpus // worker_vcpus)
        if max_workers_raw in (None, "")
        else _int("max_workers", max_workers_raw, 1, 10_000)
    )
    return worker_vcpus, max_vcpus, max_workers


def _network(raw: Callable[[str], Any], template: str) -> tuple[str, int]:
    """(worker_subnets, nat_gateways); isolated subnets only with imagery on an AWS endpoint."""
    worker_subnets = _str("worker_subnets", raw("worker_subnets"))
    if worker_subnets not in WORKER_SUBNETS:
        raise ConfigError(
            f"worker_subnets={worker_subnets!r} is not one of {', '.join(WORKER_SUBNETS)}"
        )
    tile_host = urlsplit(template.replace("{", "").replace("}", "")).hostname or ""
    # A GeoTIFF on S3 is reached through the S3 gateway endpoint, from any subnets.
    if worker_subnets == "isolated" and template and not _AWS_HOST.search(tile_host):
        raise ConfigError(
            f"worker_subnets=isolated has no route to the tile server {tile_host!r} (only AWS "
            "endpoints such as S3 are reachable): use worker_subnets=private (NAT gateway) "
            "or public"
        )
    nat_gateways = _int("nat_gateways", raw("nat_gateways"), 1, 2)
    return worker_subnets, nat_gateways


def _training(raw: Callable[[str], Any]) -> tuple[str, int, int, bool]:
    """(training_instance_type, training_max_runtime_hours, training_max_wait_hours,
    training_spot); spot training waits at least as long as it may run."""
    training_instance_type = _str("training_instance_type", raw("training_instance_type"))
    if not re.match(r"^ml\.[a-z][a-z0-9-]*\.[a-z0-9]+$", training_instance_type):
        raise ConfigError(
            f"training_instance_type={training_instance_type!r} is not a SageMaker "
            "instance type (ml.<family>.<size>)"
        )
    max_runtime = _int("training_max_runtime_hours", raw("training_max_runtime_hours"), 1, 28 * 24)
    max_wait = _int("training_max_wait_hours", raw("training_max_wait_hours"), 1, 28 * 24)
    training_spot = _bool("training_spot", raw("training_spot"))
    if training_spot and max_wait < max_runtime:
        raise ConfigError(
            f"training_max_wait_hours={max_wait} is below training_max_runtime_hours="
            f"{max_runtime} (SageMaker requires wait >= runtime for spot training)"
        )
    return training_instance_type, max_runtime, max_wait, training_spot


def _encryption(raw: Callable[[str], Any]) -> tuple[str, str]:
    """(encryption, kms_key_arn); a key ARN (not an alias) only with ``encryption=kms``."""
    encryption = _str("encryption", raw("encryption"))
    if encryption not in ENCRYPTION_MODES:
        raise ConfigError(f"encryption={encryption!r} is not one of {', '.join(ENCRYPTION_MODES)}")
    kms_key_arn = _str("kms_key_arn", raw("kms_key_arn"))
    if kms_key_arn and not _KMS_KEY_ARN.match(kms_key_arn):
        raise ConfigError(
            f"kms_key_arn={kms_key_arn!r} is not a KMS key ARN "
            "(arn:aws:kms:<region>:<account>:key/<key id>; not an alias)"
        )
    if kms_key_arn and encryption != "kms":
        raise ConfigError("kms_key_arn applies to encryption=kms only (pass -c encryption=kms)")
    return encryption, kms_key_arn
