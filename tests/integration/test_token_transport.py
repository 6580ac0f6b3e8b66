"""The imagery token only where it belongs: over HTTPS (plain HTTP to this machine aside), never
after a redirect to another host, port or scheme, and never a token an HTTP header cannot carry
(a start-up error, exit code 2, whose message shows no part of it).

Two local HTTP servers stand for two hosts: the tile server (``origin``) and another one
(``elsewhere``, another port: another origin), which records the headers it receives.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import pytest

from looking_glass.datasets.synthetic import png_bytes, render_tile
from looking_glass.imagery.secret import ImagerySecretError, check_header_token, header_safe
from looking_glass.imagery.xyz import ImagerySourceError, TileFetcher, open_imagery
from looking_glass.runtime.settings import SettingsError, WorkerSettings, token_transport_ok

TOKEN = "tok-3f9a7c1e"
X, Y, Z = 152950, 132486, 18


def _server(handler_factory):
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_factory)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class _Recorder(BaseHTTPRequestHandler):
    seen: list[dict] = []  # the headers of every request, per server class
    redirect_to = ""  # "/away/..." requests are redirected to this base URL

    def do_GET(self):  # noqa: N802
        type(self).seen.append({k.lower(): v for k, v in self.headers.items()})
        kind = self.path.strip("/").split("/")[0]
        if kind == "same":  # a redirect within the origin
            return self._redirect(self.path.replace("/same/", "/tile/", 1))
        if kind == "away":  # a redirect to another origin
            return self._redirect(type(self).redirect_to + self.path.replace("/away/", "/tile/", 1))
        body = png_bytes(render_tile(Z, X, Y)[0])
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _redirect(self, location):
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def hosts():
    """(origin base URL, origin's seen headers, elsewhere's seen headers)."""

    class Origin(_Recorder):
        seen = []

    class Elsewhere(_Recorder):
        seen = []

    origin, elsewhere = _server(Origin), _server(Elsewhere)
    Origin.redirect_to = f"http://127.0.0.1:{elsewhere.server_address[1]}"
    yield f"http://127.0.0.1:{origin.server_address[1]}", Origin.seen, Elsewhere.seen
    for server in (origin, elsewhere):
        server.shutdown()
        server.server_close()


def _fetch(template, header):
    fetcher = TileFetcher(template, retries=0, token=TOKEN, token_header=header)
    try:
        return fetcher.fetch(X, Y, Z)
    finally:
        fetcher.close()


@pytest.mark.parametrize("header", ["X-Api-Key", "Authorization"])
def test_the_token_header_does_not_follow_a_redirect_to_another_host(hosts, header):
    origin, at_origin, elsewhere = hosts
    tile = _fetch(f"{origin}/away/{{z}}/{{x}}/{{y}}.png", header)
    assert tile.image is not None  # the redirect is followed, without the credentials
    assert len(at_origin) == 1 and TOKEN in at_origin[0][header.lower()]
    assert len(elsewhere) == 1
    assert header.lower() not in elsewhere[0] and all(TOKEN not in v for v in elsewhere[0].values())


def test_the_token_header_follows_a_redirect_within_the_origin(hosts):
    origin, at_origin, elsewhere = hosts
    tile = _fetch(f"{origin}/same/{{z}}/{{x}}/{{y}}.png", "X-Api-Key")
    assert tile.image is not None
    assert [h.get("x-api-key") for h in at_origin] == [TOKEN, TOKEN] and elsewhere == []


def test_a_token_in_the_url_is_not_carried_to_another_host(hosts):
    origin, at_origin, elsewhere = hosts
    tile = _fetch(f"{origin}/away/{{z}}/{{x}}/{{y}}.png?key={{token}}", "")
    assert tile.image is not None and len(elsewhere) == 1
    assert all(TOKEN not in v for v in elsewhere[0].values())


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://tiles.example.com/{z}/{x}/{y}.png", True),
        ("http://tiles.example.com/{z}/{x}/{y}.png", False),
        ("http://10.0.0.5:8080/{z}/{x}/{y}.png", False),
        ("http://127.0.0.1:8080/{z}/{x}/{y}.png", True),  # this machine only
        ("http://localhost/{z}/{x}/{y}.png", True),
        ("http://[::1]:8080/{z}/{x}/{y}.png", True),
        ("http://127.0.0.1.example.com/{z}/{x}/{y}.png", False),
    ],
)
def test_the_token_goes_over_https_only(url, ok):
    assert token_transport_ok(url) is ok
    env = {"LG_TILE_URL_TEMPLATE": url, "LG_IMAGERY_SECRET": "looking-glass/imagery-token"}
    if ok:
        WorkerSettings.from_env(env)
        TileFetcher(url, token=TOKEN).close()
        return
    with pytest.raises(SettingsError, match="the imagery token is only sent over HTTPS"):
        WorkerSettings.from_env(env)
    with pytest.raises(ImagerySourceError, match="only sent over HTTPS") as err:
        TileFetcher(url, token=TOKEN)
    assert TOKEN not in str(err.value)
    WorkerSettings.from_env({"LG_TILE_URL_TEMPLATE": url})  # without a token: any http(s)


@pytest.mark.parametrize(
    "token",
    ["tökén-9f8e7d", "tok\u2028en-9f8e7d", "tok\u00a0en-9f8e7d", "token-9f8e7d\u200b"],
)
def test_a_token_a_header_cannot_carry_is_refused_without_showing_it(token):
    assert not header_safe(token)
    with pytest.raises(ImagerySecretError) as err:
        check_header_token(token, "looking-glass/imagery-token", "X-Api-Key")
    with pytest.raises(ImagerySourceError) as err2:
        TileFetcher("https://tiles.example.com/{z}/{x}/{y}.png", token=token, token_header="X-Api-Key")
    for message in (str(err.value), str(err2.value)):
        assert "9f8e7d" not in message and "tok" not in message.replace("token", "")
        assert "HTTP header cannot carry" in message or "header cannot carry" in message
    # In the URL ({token}) it is URL-escaped, so any printable character is fine.
    TileFetcher("https://tiles.example.com/{z}/{x}/{y}.png?k={token}", token=token).close()


def test_worker_exits_2_on_a_token_a_header_cannot_carry(moto_endpoint, aws, tmp_path):
    _, _, resources = aws
    name = f"looking-glass/imagery-{uuid.uuid4().hex[:8]}"
    token = "Bearer-ünsafe-5c4b3a"
    boto3.client("secretsmanager").create_secret(Name=name, SecretString=token)
    env = {
        **os.environ,
        **resources.to_env(),
        "LG_TILE_URL_TEMPLATE": "https://tiles.example.com/{z}/{x}/{y}.png",
        "LG_IMAGERY_SECRET": name,
        "LG_MODEL_PATH": str(tmp_path / "never-loaded.keras"),  # would exit 3 if it got that far
    }
    proc = subprocess.run(
        [sys.executable, "-m", "looking_glass.pipeline.worker_main"],
        env=env, capture_output=True, text=True, timeout=120,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 2, output
    assert f"imagery secret {name!r} holds a token with characters an HTTP header cannot carry" in output
    assert "5c4b3a" not in output and "ünsafe" not in output


def test_open_imagery_checks_the_header_token(moto_endpoint):
    name = f"looking-glass/imagery-{uuid.uuid4().hex[:8]}"
    boto3.client("secretsmanager").create_secret(Name=name, SecretString="añejo-77aa66")
    settings = WorkerSettings.from_env(
        {"LG_TILE_URL_TEMPLATE": "https://tiles.example.com/{z}/{x}/{y}.png", "LG_IMAGERY_SECRET": name}
    )
    with pytest.raises(ImagerySourceError) as err:
        open_imagery(settings, boto3.session.Session())
    assert "77aa66" not in str(err.value) and "añejo" not in str(err.value)
