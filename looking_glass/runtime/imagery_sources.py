"""Named imagery sources: the registry a deployment offers its jobs (``imagery_sources``).

The deployment registers sources by name (CDK context ``imagery_sources`` and
``default_imagery``; ``looking-glass up --imagery NAME=SOURCE``); a job names one
(``submit --imagery NAME``) and its work units carry the name, never a URL or path, so a job can
only make the workers read what the deployment registered. Workers and the enumerator receive the
registry as JSON in ``LG_IMAGERY_SOURCES`` and the default's name in ``LG_DEFAULT_IMAGERY``.

A registry is a JSON object mapping a name (1-64 letters, digits, ``.``, ``_``, ``-``, starting
with a letter or digit) to a source: either text (``SOURCE`` or ``SOURCE@YYYY-MM-DD``) or an
object ``{"source": ..., "date": "YYYY-MM-DD", "bands": "3,2,1", "attribution": "(c) Provider"}``
(``attribution``: the credit maps show under the imagery; no part of a job's identity). A source is an XYZ/TMS URL
template, or a GeoTIFF/COG or mosaic (local or ``s3://``; see docs/imagery.md). ``date`` is the
capture date (a mosaic's STAC dates win over it; it wins over a TIFF tag).

Every problem is one :class:`ImagerySourcesError` line naming the entry. The checks of one
source (:func:`validate_tile_url_template`, :func:`validate_geotiff_source`) live here too, and
:class:`SettingsError`, which :mod:`looking_glass.runtime.settings` re-exports.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from datetime import datetime, timezone
from pathlib import PurePath
from urllib.parse import urlsplit

from looking_glass.runtime.parsing import ParseError, Parsers

__all__ = [
    "GEOTIFF_SUFFIXES",
    "MOSAIC_DOCUMENT_SUFFIXES",
    "TEMPLATE_FIELD",
    "TEMPLATE_FIELDS",
    "SettingsError",
    "validate_geotiff_source",
    "validate_tile_url_template",
    "DEFAULT_IMAGERY_NAME",
    "ENV_DEFAULT_IMAGERY",
    "ENV_IMAGERY_SOURCES",
    "ENV_DEFAULT_IMAGERY_SOURCE",
    "IMAGERY_NAME",
    "CaptureDateError",
    "ImageryRegistry",
    "ImagerySource",
    "ImagerySourcesError",
    "check_attribution",
    "check_source_name",
    "encode_sources",
    "job_imagery_label",
    "parse_capture_date",
    "parse_source_entry",
    "parse_sources",
    "single_source",
    "split_capture_date",
    "unknown_imagery_reason",
]

ENV_IMAGERY_SOURCES = "LG_IMAGERY_SOURCES"
ENV_DEFAULT_IMAGERY = "LG_DEFAULT_IMAGERY"
# The default source's definition for processes that do not open it (the enumerator: the job's
# identity covers it), as one registry entry (JSON text or object); see ImageryRegistry.
ENV_DEFAULT_IMAGERY_SOURCE = "LG_DEFAULT_IMAGERY_SOURCE"
# The name of the deployment's single source (LG_TILE_URL_TEMPLATE / LG_IMAGERY_GEOTIFF, or the
# cdk.json tile_url_template / imagery_geotiff) when LG_DEFAULT_IMAGERY gives none.
DEFAULT_IMAGERY_NAME = "default"
IMAGERY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# SOURCE@DATE: whatever follows the last "@" and looks like an attempt at a date (a digit, then
# only digits, separators and ISO's T/Z) is the date, parsed or refused: "@2024/01/01" or
# "@2024-1-5" must not silently become part of a URL or a file name. An "@" in a URL's user
# info ("https://user@host/...") or a name ("scene@2x.tif") is followed by other characters.
_AT_DATE = re.compile(r"^(?P<source>.+)@(?P<date>\d[\d\-/.:+ TZ]*)$")
_TIFF_FORMAT = "%Y:%m:%d %H:%M:%S"
# A source's attribution is one line under a map.
MAX_ATTRIBUTION_CHARS = 200


class SettingsError(ParseError):
    """A runtime setting (an environment variable) is missing or invalid; the message names it."""


# Placeholders of a tile URL template: {x}, {y} (XYZ) or {-y} (TMS, rows counted from the
# south), {z}, and {token} (the API token read from LG_IMAGERY_SECRET; see looking_glass.imagery.xyz).
TEMPLATE_FIELD = re.compile(r"\{([^{}]*)\}")
TEMPLATE_FIELDS = ("x", "y", "-y", "z", "token")
GEOTIFF_SUFFIXES = (".tif", ".tiff")
# A mosaic document: a GDAL VRT, MosaicJSON or a STAC item collection (looking_glass.imagery.mosaic).
MOSAIC_DOCUMENT_SUFFIXES = (".vrt", ".json", ".geojson")


def validate_tile_url_template(template: str) -> str:
    """``template`` if it is an http(s) XYZ/TMS URL with {z}, {x} and {y} (or {-y}) and no unknown
    placeholder; else :class:`SettingsError` saying what is wrong."""
    parts = urlsplit(template)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SettingsError(f"tile URL template {template!r} is not an http(s) URL")
    fields = TEMPLATE_FIELD.findall(template)
    for name in fields:
        if name not in TEMPLATE_FIELDS:
            raise SettingsError(
                f"tile URL template {template!r} has an unknown placeholder {{{name}}} "
                f"(known: {', '.join('{' + f + '}' for f in TEMPLATE_FIELDS)})"
            )
    for field in ("z", "x"):
        if field not in fields:
            raise SettingsError(f"tile URL template {template!r} lacks {{{field}}}")
    if "y" not in fields and "-y" not in fields:
        raise SettingsError(f"tile URL template {template!r} lacks {{y}} (or {{-y}} for TMS)")
    if "y" in fields and "-y" in fields:
        raise SettingsError(f"tile URL template {template!r} has both {{y}} and {{-y}}")
    return template


def validate_geotiff_source(source: str) -> str:
    """A GeoTIFF/COG or a mosaic for LG_IMAGERY_GEOTIFF: a local path or s3://bucket/key ending
    .tif/.tiff, several of them separated by commas, or one mosaic document (.vrt, MosaicJSON or
    a STAC item collection: .json/.geojson). (Whether they exist and read as GeoTIFFs is checked
    when the worker opens them: looking_glass.imagery.mosaic.)"""
    parts = [p.strip() for p in source.split(",")]
    if len(parts) == 1 and parts[0].lower().endswith(MOSAIC_DOCUMENT_SUFFIXES):
        suffixes = MOSAIC_DOCUMENT_SUFFIXES
    else:
        suffixes = GEOTIFF_SUFFIXES
    for part in parts:
        if not part:
            raise SettingsError(f"LG_IMAGERY_GEOTIFF={source!r} has an empty entry in its list")
        if "://" in part:
            if not part.startswith("s3://"):
                raise SettingsError(f"LG_IMAGERY_GEOTIFF={part!r}: only local paths and s3:// URIs are supported")
            bucket, _, key = part[5:].partition("/")
            if not bucket or not key:
                raise SettingsError(f"LG_IMAGERY_GEOTIFF={part!r} is not an s3://bucket/key address")
        if not part.lower().endswith(suffixes):
            raise SettingsError(
                f"LG_IMAGERY_GEOTIFF={part!r} does not end in .tif or .tiff (a list of GeoTIFFs), "
                "or .vrt/.json/.geojson (one mosaic document)"
            )
    return source


class ImagerySourcesError(SettingsError):
    """The imagery registry, one of its entries, or a source name is not usable (says which)."""


class CaptureDateError(ImagerySourcesError):
    """A capture date that does not parse (the message names its source and the forms accepted)."""


def parse_capture_date(text: str, label: str) -> datetime:
    """``text`` as a naive UTC datetime: ``YYYY-MM-DD``, an ISO 8601 date-time (``Z`` or an
    offset is converted to UTC) or the TIFF ``YYYY:MM:DD HH:MM:SS``. Raises
    :class:`CaptureDateError` naming ``label`` (the file, item or source it came from)."""
    if not isinstance(text, str) or not text.strip():
        raise CaptureDateError(f"{label}: capture date {text!r} is not a date (use YYYY-MM-DD)")
    value = text.strip()
    try:
        parsed = datetime.strptime(value, _TIFF_FORMAT)
    except ValueError:
        try:
            parsed = datetime.fromisoformat(value[:-1] + "+00:00" if value.endswith("Z") else value)
        except ValueError:
            raise CaptureDateError(
                f"{label}: capture date {value!r} does not parse "
                "(use YYYY-MM-DD, an ISO 8601 date-time, or the TIFF form YYYY:MM:DD HH:MM:SS)"
            ) from None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(timezone.utc).replace(tzinfo=None)
    return parsed


@dataclass(frozen=True)
class ImagerySource:
    """One registered source: ``name``, ``source`` (URL template, or GeoTIFF/mosaic spec),
    capture ``date`` as given (None: from the files), GeoTIFF ``bands`` (None: the default), and
    the ``attribution`` maps credit it with (None: see :meth:`credit`)."""

    name: str
    source: str
    date: str | None = None
    bands: tuple[int, ...] | None = None
    attribution: str | None = None

    @property
    def is_template(self) -> bool:
        """Whether the source is an http(s) URL template (else GeoTIFFs)."""
        return self.source.startswith(("http://", "https://"))

    @property
    def digest(self) -> str:
        """16 hex digits naming what the source *is* (part of a job's identity): the template, or
        the GeoTIFFs/mosaic document in the order given (where undated images overlap, the
        first given wins, so the order can change pixels), the capture date (normalised: the same
        day written two ways is one date) and the bands. Not the name: a name registered again
        for other imagery has another digest. Not the files' contents, which the definition
        does not say (a GeoTIFF replaced under the same path keeps its digest)."""
        if self.is_template:
            kind, source = "template", self.source
        else:
            kind, source = "geotiff", [p.strip() for p in self.source.split(",")]
        date = parse_capture_date(self.date, self.name).isoformat() if self.date else None
        canonical = {"kind": kind, "source": source, "date": date, "bands": list(self.bands) if self.bands else None}
        text = json.dumps(canonical, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def to_json(self) -> dict:
        """The entry as the registry's JSON object."""
        out: dict = {"source": self.source}
        if self.date:
            out["date"] = self.date
        if self.bands:
            out["bands"] = ",".join(map(str, self.bands))
        if self.attribution:
            out["attribution"] = self.attribution
        return out

    def label(self) -> str:
        """What exports and job listings call this imagery: the registered name, except the
        implicit :data:`DEFAULT_IMAGERY_NAME`, which says nothing; for it the GeoTIFFs' file names
        (comma-joined; never a directory, bucket or query), a provider's host name, or
        ``default`` for a tile server on this machine (the synthetic world)."""
        if self.name and self.name != DEFAULT_IMAGERY_NAME:
            return self.name
        if not self.is_template:
            return ",".join(PurePath(p.strip().split("?", 1)[0]).name for p in self.source.split(",") if p.strip())
        host = urlsplit(self.source).hostname or ""
        return host if host and host not in ("127.0.0.1", "localhost", "::1") else DEFAULT_IMAGERY_NAME

    def credit(self) -> str:
        """What a map credits for this imagery: the registered ``attribution``, else the
        registered name (``imagery 'NAME'``; not the implicit :data:`DEFAULT_IMAGERY_NAME`, which
        says nothing: ``up --imagery scene.tif`` credits ``scene.tif``), else the source itself
        where it says something to a reader (a provider's URL without its query string, which may
        hold a key; a file's name), never a tile server on this machine (a port that is gone once
        ``up`` stops)."""
        if self.attribution:
            return self.attribution
        if self.name and self.name != DEFAULT_IMAGERY_NAME:
            return f"imagery '{self.name}'"
        if not self.is_template:
            return ", ".join(PurePath(p.strip()).name for p in self.source.split(","))
        if (urlsplit(self.source).hostname or "") in ("127.0.0.1", "localhost", "::1"):
            return ""
        return self.source.split("?", 1)[0]


def check_source_name(name: object, label: str = "imagery source name") -> str:
    """``name`` if it can name a source, else :class:`ImagerySourcesError`."""
    if not isinstance(name, str) or not IMAGERY_NAME.match(name):
        raise ImagerySourcesError(
            f"{label} {name!r}: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return name


def _check_source(name: str, source: str) -> None:
    try:
        if source.startswith(("http://", "https://")):
            validate_tile_url_template(source)
        else:
            validate_geotiff_source(source)
    except SettingsError as exc:
        raise ImagerySourcesError(f"imagery source {name!r}: {str(exc).replace('LG_IMAGERY_GEOTIFF=', '')}") from None


def split_capture_date(text: str) -> tuple[str, str | None]:
    """``SOURCE@DATE`` as (SOURCE, DATE), or (text, None) when nothing after its last ``@`` looks
    like a date (see ``_AT_DATE``). DATE is as written, not parsed: :func:`parse_capture_date`
    refuses a malformed one."""
    match = _AT_DATE.match(text.strip())
    return (match["source"], match["date"]) if match else (text.strip(), None)


def parse_source_entry(name: str, value: object) -> ImagerySource:
    """One registry entry (text ``SOURCE[@DATE]`` or an object, see the module) checked."""
    check_source_name(name)
    date = bands = attribution = None
    if isinstance(value, str):
        source, date = split_capture_date(value)
    elif isinstance(value, dict):
        unknown = sorted(set(value) - {"source", "date", "bands", "attribution"})
        if unknown:
            raise ImagerySourcesError(
                f"imagery source {name!r}: unknown member(s) {', '.join(unknown)} (source, date, bands, attribution)")
        source, date, raw_bands = value.get("source"), value.get("date"), value.get("bands")
        attribution = check_attribution(name, value.get("attribution"))
        if not isinstance(source, str):
            raise ImagerySourcesError(f"imagery source {name!r}: 'source' must be text (a URL template or GeoTIFFs)")
        if raw_bands is not None:
            bands = Parsers(ImagerySourcesError).bands(f"imagery source {name!r} bands", str(raw_bands))
    else:
        raise ImagerySourcesError(f"imagery source {name!r}: give text (SOURCE or SOURCE@YYYY-MM-DD) or an object")
    if not source:
        raise ImagerySourcesError(f"imagery source {name!r}: empty source")
    if date is not None:  # first: a malformed date is the problem, not the source it is cut from
        parse_capture_date(date, f"imagery source {name!r}")
    _check_source(name, source)
    if bands is not None and source.startswith(("http://", "https://")):
        raise ImagerySourcesError(f"imagery source {name!r}: bands apply to GeoTIFF sources only")
    return ImagerySource(name, source, date, bands, attribution)


def check_attribution(name: str, value: object) -> str | None:
    """The ``attribution`` of source ``name``: text of 1-200 printable characters, stripped
    (None: not given); else :class:`ImagerySourcesError`."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_ATTRIBUTION_CHARS or not value.isprintable():
        raise ImagerySourcesError(
            f"imagery source {name!r}: attribution must be text of 1-{MAX_ATTRIBUTION_CHARS} printable characters")
    return value.strip()


def parse_sources(raw: str | dict | None, label: str = ENV_IMAGERY_SOURCES) -> dict[str, ImagerySource]:
    """A registry (JSON text or an already-decoded object) as ``{name: ImagerySource}``; {} for
    None or empty text. Raises :class:`ImagerySourcesError` naming ``label`` and the entry."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return {}
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ImagerySourcesError(f"{label}: not JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise ImagerySourcesError(f"{label}: must map source names to sources (a JSON object)")
    out = {}
    for name, value in raw.items():
        try:
            out[name] = parse_source_entry(name, value)
        except ImagerySourcesError as exc:
            raise ImagerySourcesError(f"{label}: {exc}") from None
    return out


def encode_sources(sources: dict[str, ImagerySource]) -> str:
    """The registry as the compact JSON of ``LG_IMAGERY_SOURCES``."""
    return json.dumps({name: s.to_json() for name, s in sources.items()}, separators=(",", ":"), sort_keys=True)


def single_source(name: str, template: str = "", geotiff: str = "", bands: tuple[int, ...] | None = None,
                  date: str | None = None, attribution: str | None = None) -> ImagerySource:
    """The deployment's single source (``LG_TILE_URL_TEMPLATE`` or ``LG_IMAGERY_GEOTIFF`` with
    ``LG_IMAGERY_BANDS``; cdk.json ``tile_url_template``/``imagery_geotiff``) as the registry
    entry named ``name``, so it has a definition and a digest like the named ones."""
    return ImagerySource(name, template or geotiff, date, tuple(bands) if bands else None, attribution)


def unknown_imagery_reason(name: str, registered) -> str:
    """The one error line for an imagery source name the deployment did not register, with the
    registered names and up to three close ones (a mistyped name)."""
    names = sorted(set(registered))
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.75)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return f"unknown imagery source {name!r}: not registered with this deployment (registered: {', '.join(names)}){hint}"


@dataclass(frozen=True)
class ImageryRegistry:
    """The sources a deployment offers, as the processes that do not open them see them (the
    enumerator, the CLI): ``sources`` by name, the default's definition among them where it is
    known, and the ``default`` name (the source of a job that names none).

    As JSON (:meth:`to_json`; the stack output ``ImagerySources``, the embedded run's state
    file): ``{"default": NAME, "sources": {NAME: entry, ...}}`` with entries as in
    :func:`parse_source_entry`."""

    sources: dict[str, ImagerySource] = dataclass_field(default_factory=dict)
    default: str = DEFAULT_IMAGERY_NAME

    @property
    def names(self) -> frozenset[str]:
        """Every name a job may give: the registered sources and the default."""
        return frozenset({*self.sources, self.default})

    def resolve(self, name: str | None) -> str:
        """The source a job naming ``name`` runs on (None: the default)."""
        return name or self.default

    def digest(self, name: str | None) -> str:
        """The :attr:`ImagerySource.digest` of the source ``name`` (None: the default); "" where
        its definition is not known here (then a job's identity holds its name only)."""
        source = self.sources.get(self.resolve(name))
        return source.digest if source is not None else ""

    def unknown(self, name: str | None) -> str | None:
        """The reason ``name`` cannot be used (:func:`unknown_imagery_reason`), None if it can."""
        name = self.resolve(name)
        return None if name in self.names else unknown_imagery_reason(name, self.names)

    def to_json(self) -> str:
        """The registry as compact JSON (see the class)."""
        return json.dumps({"default": self.default, "sources": {n: s.to_json() for n, s in self.sources.items()}},
                          separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, raw: str | dict, label: str) -> ImageryRegistry:
        """The registry of :meth:`to_json` (text or decoded); :class:`ImagerySourcesError`
        naming ``label`` (where it came from) for anything else."""
        try:
            doc = json.loads(raw) if isinstance(raw, str) else raw
        except json.JSONDecodeError as exc:
            raise ImagerySourcesError(f"{label}: not JSON ({exc})") from None
        if not isinstance(doc, dict) or set(doc) != {"default", "sources"}:
            raise ImagerySourcesError(f"{label}: must be an object with 'default' and 'sources'")
        default = check_source_name(doc["default"], f"{label}: default")
        return cls(parse_sources(doc["sources"], label), default)


def job_imagery_label(job: dict) -> str:
    """What exports, ``jobs`` and ``status`` call the imagery a job (its record) ran on:
    :meth:`ImagerySource.label` of the definition it recorded (``imagery_source``): for the
    unnamed default source a GeoTIFF's file name, never ``default`` or a secret; its ``imagery``
    name (``default`` when none) for a record without a readable definition."""
    name = str(job.get("imagery") or DEFAULT_IMAGERY_NAME)
    recorded = job.get("imagery_source")
    if isinstance(recorded, dict):
        try:
            return parse_source_entry(name, recorded).label() or name
        except ImagerySourcesError:
            pass  # written by another version: its name
    return name
