"""The synthetic tile server serves each tile as JPEG too (``.jpg``), as satellite imagery
services do: the same picture as the PNG, within JPEG's loss; masks and other sources stay PNG."""

from __future__ import annotations

import numpy as np
import requests

from looking_glass.datasets.synthetic import render_tile
from looking_glass.imagery.tiles import decode_tile
from looking_glass.local.tileserver import SyntheticTileServer

Z, X, Y = 18, 152900, 132400


def test_a_jpeg_tile_is_the_synthetic_tile_within_jpeg_loss():
    with SyntheticTileServer() as server:
        base = server.url_template.rsplit("/{z}", 1)[0]
        resp = requests.get(f"{base}/{Z}/{X}/{Y}.jpg", timeout=30)
        assert resp.status_code == 200 and resp.headers["Content-Type"] == "image/jpeg"
        assert resp.content[:2] == b"\xff\xd8"
        tile = decode_tile(X, Y, Z, resp.content)
        expected = render_tile(Z, X, Y)[0].astype(int)
        assert np.abs(tile.image.astype(int) - expected).mean() < 6
        assert len(resp.content) < len(requests.get(f"{base}/{Z}/{X}/{Y}.png", timeout=30).content)
        assert requests.get(f"{base}/{Z}/{X}/{Y}.mask.jpg", timeout=30).status_code == 404


def test_a_tile_source_server_answers_jpeg_requests_with_404():
    with SyntheticTileServer(tile_source=lambda z, x, y: b"png") as server:
        base = server.url_template.rsplit("/{z}", 1)[0]
        resp = requests.get(f"{base}/{Z}/{X}/{Y}.jpg", timeout=30)
        assert resp.status_code == 404 and "PNG tiles only" in resp.text
        assert requests.get(f"{base}/{Z}/{X}/{Y}.png", timeout=30).content == b"png"
