"""The imagery API token: read from Secrets Manager (moto) at start-up, sent to a tile server that
requires it, and never seen in results, exception messages or log lines."""

import json
import logging
import os
import subprocess
import sys
import threading
import uuid
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
from test_worker import JOB, settings_for, start_job, tiny_segmenter  # noqa: F401 - a fixture

from looking_glass.datasets.synthetic import png_bytes, render_tile
from looking_glass.imagery.secret import ImagerySecretError, read_imagery_token
from looking_glass.imagery.tiles import TransientTileError
from looking_glass.imagery.xyz import (
    ImagerySourceError,
    TileFetcher,
    expand_template,
    open_imagery,
    public_imagery_name,
)
from looking_glass.pipeline.store import COMPLETE
from looking_glass.runtime.settings import SettingsError, WorkerSettings

TOKEN = "s3cr3t-T0ken/with+odd&chars"
TILE = (152950, 132486, 18)  # x, y, z


class TokenHandler(BaseHTTPRequestHandler):
    """Serves synthetic tiles only with the token: ``/q/...?key=T``, ``/bearer/...`` with
    ``Authorization: Bearer T``, ``/apikey/...`` with ``X-Api-Key: T``, ``/p/T/...`` in the path,
    ``/down/...`` always 503 (once authorised). Anything else: 401."""

    def do_GET(self):  # noqa: N802
        parts = urlsplit(self.path)
        segs = parts.path.strip("/").split("/")
        kind = segs[0]
        ok = {
            "q": parse_qs(parts.query).get("key") == [TOKEN],
            "bearer": self.headers.get("Authorization") == f"Bearer {TOKEN}",
            "apikey": self.headers.get("X-Api-Key") == TOKEN,
            "p": len(segs) > 1 and segs[1] == TOKEN.replace("/", "%2F").replace("+", "%2B").replace("&", "%26"),
            "down": parse_qs(parts.query).get("key") == [TOKEN],
        }.get(kind, False)
        if not ok:
            return self._send(401, b"token required", "text/plain")
        if kind == "down":
            return self._send(503, b"", "text/plain")
        z, x, y = (int(v) for v in segs[-3:-1] + [segs[-1].split(".")[0]])
        self._send(200, png_bytes(render_tile(z, x, y)[0]), "image/png")

    def _send(self, code, body, ctype):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def token_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), TokenHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def secret(moto_endpoint):
    """A fresh secret on the moto server holding TOKEN; yields its name."""
    name = f"looking-glass/imagery-{uuid.uuid4().hex[:8]}"
    boto3.client("secretsmanager").create_secret(Name=name, SecretString=TOKEN)
    return name


def worker_settings(env):
    return WorkerSettings.from_env(env)


# ---- reading the secret ---------------------------------------------------------------------
def test_the_token_is_read_from_secrets_manager_plain_or_json(secret, caplog):
    session = boto3.session.Session()
    caplog.set_level(logging.DEBUG)  # botocore logs response bodies at DEBUG: not this one
    assert read_imagery_token(session, secret) == TOKEN
    name = f"json-{uuid.uuid4().hex[:8]}"
    session.client("secretsmanager").create_secret(Name=name, SecretString=json.dumps({"token": TOKEN, "note": "x"}))
    assert read_imagery_token(session, name) == TOKEN
    assert "GetSecretValue" in caplog.text and TOKEN not in caplog.text


@pytest.mark.parametrize(
    "value, message",
    [
        ("   ", "is empty"),
        (json.dumps({"key": "abc"}), 'without a string "token" member'),
        ("{not json", "does not parse"),
        ("abc\r\nX-Evil: 1", "control characters"),
        (None, "binary secrets are not supported"),
    ],
)
def test_unusable_secrets_are_refused_without_showing_the_value(moto_endpoint, value, message):
    session = boto3.session.Session()
    name = f"bad-{uuid.uuid4().hex[:8]}"
    if value is None:
        session.client("secretsmanager").create_secret(Name=name, SecretBinary=b"\x00\x01")
    else:
        session.client("secretsmanager").create_secret(Name=name, SecretString=value)
    with pytest.raises(ImagerySecretError) as err:
        read_imagery_token(session, name)
    assert message in str(err.value) and name in str(err.value)
    assert value is None or value.strip() in ("", "{not json") or value not in str(err.value)


def test_a_missing_secret_is_a_clear_start_up_error(moto_endpoint, token_server):
    settings = worker_settings(
        {"LG_TILE_URL_TEMPLATE": f"{token_server}/q/{{z}}/{{x}}/{{y}}.png?key={{token}}", "LG_IMAGERY_SECRET": "no/such-secret"}
    )
    with pytest.raises(ImagerySourceError, match=r"cannot read imagery secret 'no/such-secret': ResourceNotFoundException"):
        open_imagery(settings, boto3.session.Session())


# ---- using the token ----------------------------------------------------------------------
@pytest.mark.parametrize(
    "path, extra_env",
    [
        ("q/{z}/{x}/{y}.png?key={token}", {}),  # a query parameter
        ("p/{token}/{z}/{x}/{y}.png", {}),  # in the path (URL-escaped)
        ("bearer/{z}/{x}/{y}.png", {}),  # no {token}: Authorization: Bearer <token>
        ("apikey/{z}/{x}/{y}.png", {"LG_IMAGERY_TOKEN_HEADER": "X-Api-Key"}),  # a named header
    ],
)
def test_a_tile_server_that_requires_the_token_serves_the_worker(secret, token_server, path, extra_env):
    template = f"{token_server}/{path}"
    settings = worker_settings({"LG_TILE_URL_TEMPLATE": template, "LG_IMAGERY_SECRET": secret, **extra_env})
    fetcher = open_imagery(settings, boto3.session.Session())
    tile = fetcher.fetch(*TILE)
    assert tile.image is not None and tile.image.shape == (256, 256, 3), tile
    assert TOKEN not in fetcher.public_name
    # Without the token the same server refuses: the test server really checks it.
    # (A refused token is transient, never a final tile status.)
    with pytest.raises(TransientTileError, match="HTTP 401"):
        TileFetcher(template.replace("{token}", "nope"), timeout_s=2, retries=0).fetch(*TILE)


def test_the_token_never_reaches_logs_or_errors(secret, token_server, caplog):
    settings = worker_settings(
        {"LG_TILE_URL_TEMPLATE": f"{token_server}/down/{{z}}/{{x}}/{{y}}.png?key={{token}}", "LG_IMAGERY_SECRET": secret}
    )
    fetcher = open_imagery(settings, boto3.session.Session())
    fetcher._backoff = lambda attempt, retry_after=None: None
    caplog.set_level(logging.DEBUG)  # urllib3 logs every request line at DEBUG
    with pytest.raises(TransientTileError) as err:
        fetcher.fetch(*TILE)
    assert TOKEN not in str(err.value)
    requests_logged = [r.getMessage() for r in caplog.records if r.name.startswith("urllib3")]
    assert any("/down/18/" in m and "key=***" in m for m in requests_logged), requests_logged
    escaped = expand_template("{token}", 0, 0, 0, TOKEN)
    assert TOKEN not in caplog.text and escaped not in caplog.text


def test_the_worker_end_to_end_with_a_token_stores_no_token(aws, token_server, tiny_segmenter, caplog):  # noqa: F811
    session, names, resources = aws
    name = f"lg-{uuid.uuid4().hex[:8]}"
    session.client("secretsmanager").create_secret(Name=name, SecretString=TOKEN)
    caplog.set_level(logging.DEBUG)
    store, total = start_job(session, names, resources, [[132486, 152950, 152954]])
    template = f"http://user:pw@{token_server[7:]}/q/{{z}}/{{x}}/{{y}}.png?key={{token}}"
    settings = replace(settings_for(template), imagery_secret=name)

    from looking_glass.pipeline.worker import Worker

    stats = Worker(session, resources, settings, tiny_segmenter).run()
    job, items = store.get_job(JOB), store.tile_items(JOB)
    assert stats.tiles_new == total == job["tiles_done"] and job["status"] == COMPLETE
    assert {i["imagery"] for i in items} == {f"{token_server}/q/{{z}}/{{x}}/{{y}}.png"}
    assert all(TOKEN not in json.dumps(i, default=str) for i in items)
    assert TOKEN not in caplog.text and "key=***" in caplog.text


def test_public_imagery_name_drops_query_and_credentials():
    assert public_imagery_name("https://u:p@t.example.com:8443/{z}/{x}/{y}.png?key={token}") == (
        "https://t.example.com:8443/{z}/{x}/{y}.png"
    )
    assert public_imagery_name("s3://bucket/ortho.tif") == "s3://bucket/ortho.tif"


def test_tms_rows_count_from_the_south():
    assert expand_template("http://t/{z}/{x}/{-y}.png", 3, 0, 2) == "http://t/2/3/3.png"
    assert expand_template("http://t/{z}/{x}/{y}.png", 3, 0, 2) == "http://t/2/3/0.png"


# ---- settings -----------------------------------------------------------------------------
T = "http://tiles.local/{z}/{x}/{y}.png"


@pytest.mark.parametrize(
    "env, message",
    [
        ({"LG_TILE_URL_TEMPLATE": "http://t/{z}/{x}/{y}.png?k={key}"}, "unknown placeholder {key}"),
        ({"LG_TILE_URL_TEMPLATE": "http://t/{z}/{x}/{y}/{-y}.png"}, "both {y} and {-y}"),
        ({"LG_TILE_URL_TEMPLATE": "http://t/{z}/{x}.png"}, "lacks {y} (or {-y} for TMS)"),
        ({"LG_TILE_URL_TEMPLATE": T + "?k={token}"}, "has {token} but LG_IMAGERY_SECRET is not set"),
        ({"LG_TILE_URL_TEMPLATE": T, "LG_IMAGERY_TOKEN_HEADER": "X-Key"}, "LG_IMAGERY_SECRET is not"),
        ({"LG_TILE_URL_TEMPLATE": T, "LG_IMAGERY_SECRET": "has spaces"}, "not a Secrets Manager secret name"),
        ({"LG_TILE_URL_TEMPLATE": T, "LG_IMAGERY_SECRET": "s", "LG_IMAGERY_TOKEN_HEADER": "X Key"}, "not an HTTP header name"),
        (
            {"LG_TILE_URL_TEMPLATE": T + "?k={token}", "LG_IMAGERY_SECRET": "s", "LG_IMAGERY_TOKEN_HEADER": "X-Key"},
            "send the token one way only",
        ),
    ],
)
def test_bad_token_settings_name_the_variable(env, message):
    with pytest.raises(SettingsError) as err:
        WorkerSettings.from_env(env)
    assert message in str(err.value)


def test_token_settings_that_are_accepted():
    T = "https://tiles.local/{z}/{x}/{y}.png"  # a token goes over HTTPS only (test_token_transport)
    s = WorkerSettings.from_env({"LG_TILE_URL_TEMPLATE": T, "LG_IMAGERY_SECRET": "looking-glass/imagery-token"})
    assert s.imagery_secret == "looking-glass/imagery-token" and s.imagery_token_header == "Authorization"
    arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:lg/token-AbCdEf"
    s = WorkerSettings.from_env({"LG_TILE_URL_TEMPLATE": T + "?k={token}", "LG_IMAGERY_SECRET": arn})
    assert s.imagery_secret == arn and s.imagery_token_header == ""
    s = WorkerSettings.from_env({"LG_TILE_URL_TEMPLATE": "http://t/{z}/{x}/{-y}.png"})
    assert s.tile_url_template.endswith("{-y}.png") and s.imagery_secret == ""


def test_worker_process_exits_2_on_a_missing_secret_before_loading_the_model(moto_endpoint, aws, tmp_path):
    _, _, resources = aws
    env = {
        **os.environ,
        **resources.to_env(),
        "LG_TILE_URL_TEMPLATE": "http://127.0.0.1:9/{z}/{x}/{y}.png?key={token}",
        "LG_IMAGERY_SECRET": "missing/imagery-token",
        "LG_MODEL_PATH": str(tmp_path / "never-loaded.keras"),  # would exit 3 if it got that far
    }
    proc = subprocess.run([sys.executable, "-m", "looking_glass.pipeline.worker_main"], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "bad imagery source: cannot read imagery secret 'missing/imagery-token': ResourceNotFoundException" in proc.stdout
    assert "cannot load model" not in proc.stdout
