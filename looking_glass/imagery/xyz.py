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

import heapq
import logging
import random
import socket
import threading
import time
from urllib.parse import quote, urlsplit, urlunsplit

import requests
import urllib3
import urllib3.connection
from requests.adapters import HTTPAdapter

from looking_glass.errors import LookingGlassError
from looking_glass.imagery.secret import header_safe
from looking_glass.imagery.status import TILE_FAILED, TILE_NO_IMAGERY
from looking_glass.imagery.tiles import FetchedTile, TransientTileError, decode_tile
from looking_glass.runtime.settings import (
    DEFAULT_TOKEN_HEADER,
    TEMPLATE_FIELD,
    WorkerSettings,
    token_transport_ok,
)

MAX_RETRY_AFTER_S = 60.0
# The most bytes one tile's response body may hold: a 256 x 256 16-bit RGBA PNG stored without
# compression is about 0.5 MB; a longer body is a failed tile, read no further.
MAX_TILE_BYTES = 4 * 1024 * 1024
_READ_CHUNK = 64 * 1024


class _BodyTooLarge(Exception):
    """The response body is longer than the byte cap (a final ``failed`` tile)."""


class _DeadlinePassed(Exception):
    """The response did not arrive in full before the tile's deadline (retried, as a timeout)."""


def _read_body(resp, deadline: float, max_bytes: int) -> bytes:
    """The body of a streamed ``requests`` response, read as it arrives (each read returns what
    one receive brought, so a server that trickles bytes is stopped at ``deadline``, a
    ``time.monotonic()`` value); raises _BodyTooLarge past ``max_bytes``."""
    declared = resp.headers.get("Content-Length", "")
    if declared.strip().isdigit() and int(declared) > max_bytes:
        raise _BodyTooLarge(f"response body of {int(declared)} bytes (the cap is {max_bytes})")
    raw, parts, size = resp.raw, [], 0
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise _DeadlinePassed(f"deadline passed after {size} bytes")
        _socket_timeout(raw, left)
        chunk = raw.read1(_READ_CHUNK, decode_content=True)
        if not chunk:  # the end of the body: the connection can serve the next tile
            raw.release_conn()
            break
        size += len(chunk)
        if size > max_bytes:
            raise _BodyTooLarge(f"response body longer than {max_bytes} bytes (the cap)")
        parts.append(chunk)
    return b"".join(parts)


# The connection each fetching thread is sending on, so that a watchdog can cut a response whose
# status line and headers trickle in past the deadline (each read would wait only its timeout).
_SENDING = threading.local()


class _WatchedHTTPConnection(urllib3.connection.HTTPConnection):
    def request(self, *args, **kwargs):
        holder = getattr(_SENDING, "holder", None)
        if holder is not None:
            holder["conn"] = self
        return super().request(*args, **kwargs)


class _WatchedHTTPSConnection(urllib3.connection.HTTPSConnection):
    request = _WatchedHTTPConnection.request


class _WatchedHTTPPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


class _Watchdog:
    """One thread that cuts every download whose status line and headers are not in by its
    deadline (``_cut``), for all fetchers of the process: a ``threading.Timer`` per attempt
    started and stopped a thread per tile (0.1 ms of CPU each). Deadlines wait in a heap;
    ``done`` marks one finished, and a finished one is never cut (both under one lock, so a
    connection back in the pool, maybe serving another tile, is never shut)."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._heap: list[tuple[float, int, dict]] = []  # (monotonic deadline, sequence, holder)
        self._seq = 0
        self._thread: threading.Thread | None = None

    def watch(self, holder: dict, deadline: float) -> None:
        """Cut ``holder``'s connection at ``deadline`` (``time.monotonic()``) unless ``done``
        comes first."""
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="tile-deadlines", daemon=True)
                self._thread.start()
            self._seq += 1
            heapq.heappush(self._heap, (deadline, self._seq, holder))
            if self._heap[0][2] is holder:  # the earliest now: the thread waits for a later one
                self._lock.notify()

    def done(self, holder: dict) -> None:
        """The attempt has its headers, or failed: never cut it (it leaves the heap lazily)."""
        with self._lock:
            holder["done"] = True

    def _run(self) -> None:
        with self._lock:
            while True:
                now = time.monotonic()
                while self._heap and (self._heap[0][2].get("done") or self._heap[0][0] <= now):
                    _, _, holder = heapq.heappop(self._heap)
                    if not holder.get("done"):
                        _cut(holder)
                self._lock.wait(self._heap[0][0] - now if self._heap else None)


def _cut(holder: dict) -> None:
    """The deadline passed before the headers came: shut the connection's socket, so the read
    waiting on it ends now."""
    holder["cut"] = holder["done"] = True
    sock = getattr(holder.get("conn"), "sock", None)
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


_WATCHDOG = _Watchdog()


def _socket_timeout(raw, seconds: float) -> None:
    """Make the next receive of urllib3 response ``raw`` wait at most ``seconds`` (best effort:
    without a reachable socket the request's read timeout applies)."""
    sock = getattr(getattr(raw, "_connection", None), "sock", None)
    if sock is None:  # after the headers urllib3 leaves the socket to http.client's reader
        sock = getattr(getattr(getattr(getattr(raw, "_fp", None), "fp", None), "raw", None), "_sock", None)
    if sock is not None:
        try:
            sock.settimeout(max(0.01, min(seconds, sock.gettimeout() or seconds)))
        except OSError:
            pass


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


class _TileSession(requests.Session):
    """A session that looks at the environment (proxy variables, CA bundle) once per origin, not
    once per tile: requests reads the whole of ``os.environ`` for every request (0.15 ms of CPU
    a tile). The worker's environment does not change while it runs."""

    def __init__(self) -> None:
        super().__init__()
        self._environment: dict[tuple, dict] = {}

    def merge_environment_settings(self, url, proxies, stream, verify, cert):
        if proxies or verify is not None or cert is not None:  # explicit settings: as requests does
            return super().merge_environment_settings(url, proxies, stream, verify, cert)
        key = (_origin(url), stream)
        settings = self._environment.get(key)
        if settings is None:
            settings = self._environment[key] = super().merge_environment_settings(url, {}, stream, None, None)
        return {**settings, "proxies": dict(settings["proxies"])}


class _TokenSession(_TileSession):
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
        max_bytes: int = MAX_TILE_BYTES,
        deadline_s: float | None = None,
    ):
        self.url_template = url_template
        self.public_name = public_imagery_name(url_template)
        self.timeout_s = timeout_s
        # Bounds on one response: its body (bytes, after any content decoding) and the total time
        # of one attempt, connect to last byte (a per-read timeout alone lets a server that
        # trickles bytes hold a tile for ever).
        self.max_bytes = max_bytes
        self.deadline_s = timeout_s if deadline_s is None else deadline_s
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
        self.session = _TokenSession(_origin(url_template), header) if header else _TileSession()
        adapter = HTTPAdapter(pool_connections=pool, pool_maxsize=pool)
        # Connections a per-tile deadline can cut while headers trickle in (see _cut).
        adapter.poolmanager.pool_classes_by_scheme = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}
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
            deadline = time.monotonic() + self.deadline_s
            _SENDING.holder = holder = {}
            _WATCHDOG.watch(holder, deadline)
            try:
                resp = self.session.get(url, timeout=self.timeout_s, stream=True)
            except requests.RequestException as exc:
                last_error = f"{type(exc).__name__}"
                if holder.get("cut"):
                    last_error = f"no full response within the deadline of {self.deadline_s:g} s"
                if attempt < self.retries:  # no wait after the last attempt: the message goes back
                    self._backoff(attempt)
                continue
            finally:
                _WATCHDOG.done(holder)
                _SENDING.holder = None
            try:
                body = _read_body(resp, deadline, self.max_bytes) if resp.status_code == 200 else b""
            except _BodyTooLarge as exc:
                return FetchedTile(x, y, z, status=TILE_FAILED, reason=str(exc))
            except (_DeadlinePassed, requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
                last_error = type(exc).__name__
                if isinstance(exc, _DeadlinePassed) or time.monotonic() >= deadline:
                    last_error = f"no full response within the deadline of {self.deadline_s:g} s"
                if attempt < self.retries:
                    self._backoff(attempt)
                continue
            finally:
                resp.close()
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
            return decode_tile(x, y, z, body)
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
    Secrets Manager first when ``imagery_secret`` is set) or a GeoTIFF source (one GeoTIFF, or a
    mosaic: :func:`looking_glass.imagery.mosaic.open_geotiff_source`). Raises
    ImagerySourceError (the secret or the GeoTIFF cannot be used) with a message fit to log."""
    if settings.imagery_geotiff:
        from looking_glass.imagery.geotiff import GeoTiffError
        from looking_glass.imagery.mosaic import open_geotiff_source

        try:
            return open_geotiff_source(settings.imagery_geotiff, bands=settings.imagery_bands, session=session)
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
