"""Imagery sources of the worker, and what each tile's outcome means.

Two sources (README "Imagery sources"): an XYZ/TMS URL template fetched over HTTP
(:class:`TileFetcher`, optionally with an API token from Secrets Manager), or a GeoTIFF/COG read as
zoom-18 web-mercator tiles (:class:`looking_glass.imagery.geotiff.GeoTiffTiles`). Both hand the
worker :class:`~looking_glass.imagery.tiles.FetchedTile`; :func:`open_imagery` builds the one the
settings name.

Outcomes: an image; ``no_imagery`` (404/204); ``skipped`` (a blank, single-colour or fully
transparent tile); ``failed`` (corrupt, not an image, wrong size: no retry can fix these);
``TransientTileError`` (429/5xx/timeouts still failing after retries: the work unit is left on the
queue for redelivery, and so reaches the dead-letter queue if it never succeeds).
"""

from __future__ import annotations

import logging
import random
import time
from urllib.parse import quote, urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter

from looking_glass.errors import LookingGlassError
from looking_glass.runtime.settings import (
    DEFAULT_TOKEN_HEADER,
    TEMPLATE_FIELD,
    WorkerSettings,
    token_transport_ok,
)
from looking_glass.imagery.secret import header_safe
from looking_glass.imagery.status import TILE_FAILED, TILE_NO_IMAGERY
from looking_glass.imagery.tiles import FetchedTile, TransientTileError, decode_tile

MAX_RETRY_AFTER_S = 60.0


class ImagerySourceError(LookingGlassError, RuntimeError):
    """The configured imagery source cannot be used (reported at start-up; exit code 2)."""


def expand_template(template: str, x: int, y: int, z: int, token: str | None = None) -> str:
    """The URL of tile z/x/y: ``{x}``, ``{y}``, ``{-y}`` (TMS row: 2**z - 1 - y), ``{z}`` and
    ``{token}`` (URL-escaped) replaced; the template was validated by the settings."""

    def field(match) -> str:
        name = match.group(1)
        if name == "x":
            return str(x)
        if name == "y":
            return str(y)
        if name == "-y":
            return str(2**z - 1 - y)
        if name == "z":
            return str(z)
        if name == "token" and token is not None:
            return quote(token, safe="")
        raise ValueError(f"placeholder {{{name}}} has no value")

    return TEMPLATE_FIELD.sub(field, template)


def public_imagery_name(source: str) -> str:
    """The imagery source as stored with results: a URL template without query string or
    credentials (so never a token), a GeoTIFF path or s3:// URI as given."""
    parts = urlsplit(source)
    if parts.scheme not in ("http", "https"):
        return source
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class RedactFilter(logging.Filter):
    """Replaces a secret in log records (urllib3 logs request URLs at DEBUG level)."""

    def __init__(self, *secrets: str):
        super().__init__()
        self.secrets = [v for v in secrets if v]

    def filter(self, record: logging.LogRecord) -> bool:
        """Replace the secrets in the record's message (always keeps the record)."""
        message = record.getMessage()
        if any(v in message for v in self.secrets):
            for v in self.secrets:
                message = message.replace(v, "***")
            record.msg, record.args = message, None
        return True


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return parts.scheme, (parts.hostname or ""), parts.port or {"http": 80, "https": 443}.get(parts.scheme)


class _TokenSession(requests.Session):
    """A session that sends the token header to the template's origin only: a redirect to
    another host, port or scheme is followed without it. (requests itself drops only an
    ``Authorization`` header, and only when the host changes.)"""

    def __init__(self, origin: tuple[str, str, int | None], token_header: str) -> None:
        super().__init__()
        self._origin = origin
        self._token_header = token_header

    def rebuild_auth(self, prepared_request, response) -> None:
        super().rebuild_auth(prepared_request, response)
        if _origin(prepared_request.url) != self._origin:
            prepared_request.headers.pop(self._token_header, None)


# Loggers that see request URLs or headers of the tile downloads.
_HTTP_LOGGERS = ("urllib3.connectionpool", "urllib3.connection", "urllib3.util.retry", "requests")


class TileFetcher:
    """Tiles of an XYZ/TMS URL template over HTTP. With ``token``, the API token goes into the
    template's ``{token}`` or, without one, into the ``token_header`` HTTP header (the
    ``Authorization`` header as ``Bearer <token>``, any other header as the token itself). The
    token never appears in a FetchedTile, an exception message or a log line. It is sent over
    HTTPS only (plain HTTP to this machine aside, see ``settings.token_transport_ok``), and the
    header never follows a redirect to another host, port or scheme."""

    def __init__(
        self,
        url_template: str,
        timeout_s: float = 10.0,
        retries: int = 3,
        pool: int = 16,
        token: str | None = None,
        token_header: str = "",
    ):
        self.url_template = url_template
        self.public_name = public_imagery_name(url_template)
        self.timeout_s = timeout_s
        self.retries = retries
        self._token = token
        in_url = "token" in TEMPLATE_FIELD.findall(url_template)
        header = "" if token is None or in_url else (token_header or DEFAULT_TOKEN_HEADER)
        if token is not None and not token_transport_ok(url_template):
            raise ImagerySourceError(
                f"the imagery token is only sent over HTTPS, and {self.public_name} is not"
            )
        if header and not header_safe(token):
            raise ImagerySourceError(
                f"the imagery token has characters the {header} HTTP header cannot carry"
            )
        self.session = _TokenSession(_origin(url_template), header) if header else requests.Session()
        adapter = HTTPAdapter(pool_connections=pool, pool_maxsize=pool)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        if token is not None:
            if header:
                value = f"Bearer {token}" if header.lower() == "authorization" else token
                self.session.headers[header] = value
            redact = RedactFilter(token, quote(token, safe=""))
            for name in _HTTP_LOGGERS:
                logging.getLogger(name).addFilter(redact)

    def url(self, x: int, y: int, z: int) -> str:
        """The tile's URL (with the token where the template has ``{token}``)."""
        return expand_template(self.url_template, x, y, z, self._token)

    def close(self) -> None:
        """Close the HTTP session."""
        self.session.close()

    def fetch(self, x: int, y: int, z: int) -> FetchedTile:
        """The tile over HTTP with retries: an image, or no_imagery (404/204), failed (other
        4xx, undecodable) or skipped (blank); TransientTileError when it cannot be had now."""
        url = self.url(x, y, z)
        last_error = ""
        for attempt in range(self.retries + 1):
            try:
                resp = self.session.get(url, timeout=self.timeout_s)
            except requests.RequestException as exc:
                last_error = f"{type(exc).__name__}"
                if attempt < self.retries:  # no wait after the last attempt: the message goes back
                    self._backoff(attempt)
                continue
            if resp.status_code in (404, 204):
                return FetchedTile(x, y, z, status=TILE_NO_IMAGERY, reason=f"HTTP {resp.status_code}")
            if resp.status_code in (401, 403):
                # A refused or expired token is the deployment's problem, not the tile's: never a
                # final status; the unit goes back to the queue (and, if it persists, to the DLQ,
                # from where `looking-glass retry` brings it back once the token is fixed).
                raise TransientTileError(f"tile {z}/{x}/{y}: HTTP {resp.status_code} (imagery access refused)")
            if resp.status_code == 429 or resp.status_code >= 500:
                last_error = f"HTTP {resp.status_code}"
                if attempt < self.retries:
                    self._backoff(attempt, resp.headers.get("Retry-After"))
                continue
            if resp.status_code != 200:
                return FetchedTile(x, y, z, status=TILE_FAILED, reason=f"HTTP {resp.status_code}")
            return decode_tile(x, y, z, resp.content)
        raise TransientTileError(f"tile {z}/{x}/{y}: {last_error} after {self.retries + 1} attempts")

    @staticmethod
    def _backoff(attempt: int, retry_after: str | None = None) -> None:
        if retry_after:
            try:
                time.sleep(min(float(retry_after), MAX_RETRY_AFTER_S))
                return
            except ValueError:
                pass
        time.sleep(min(8.0, 0.2 * 2**attempt) * random.uniform(0.5, 1.0))  # full-ish jitter


def open_imagery(settings: WorkerSettings, session=None):
    """The tile source the settings name: a :class:`TileFetcher` (reading its API token from
    Secrets Manager first when ``imagery_secret`` is set) or a GeoTIFF source. Raises
    ImagerySourceError (the secret or the GeoTIFF cannot be used) with a message fit to log."""
    if settings.imagery_geotiff:
        from looking_glass.imagery.geotiff import GeoTiffError, GeoTiffTiles

        try:
            return GeoTiffTiles(settings.imagery_geotiff, bands=settings.imagery_bands, session=session)
        except GeoTiffError as exc:
            raise ImagerySourceError(str(exc)) from None
    token = None
    if settings.imagery_secret:
        import boto3

        from looking_glass.imagery.secret import ImagerySecretError, check_header_token, read_imagery_token

        try:
            token = read_imagery_token(session or boto3.session.Session(), settings.imagery_secret)
            if settings.imagery_token_header:  # else it goes URL-escaped into {token}
                check_header_token(token, settings.imagery_secret, settings.imagery_token_header)
        except ImagerySecretError as exc:
            raise ImagerySourceError(str(exc)) from None
    return TileFetcher(
        settings.tile_url_template,
        timeout_s=settings.download_timeout_s,
        retries=settings.download_retries,
        pool=settings.download_concurrency,
        token=token,
        token_header=settings.imagery_token_header,
    )
