"""The imagery under a job's map: where its tiles come from, and the tiles written next to the page.

A job's imagery is an XYZ/TMS URL template or a GeoTIFF/COG (or a mosaic of them), local or
``s3://``. A browser can only show the first kind, and only while its server runs, so the map
(:mod:`looking_glass.results.webmap`) is given one of two backgrounds:

- **files next to the page** (:func:`write_basemap`) for a GeoTIFF/COG or mosaic source (read with
  rio-tiler, as ``serve-tiles`` and the workers read it) and for a template on this machine
  (``127.0.0.1``/``localhost``: the embedded run's tile server, which stops with ``up``). The
  job's zoom-18 tiles are written to ``map_tiles/18/X/Y.webp`` and halved level by level
  (2x2 tiles -> one) down to the zoom where the whole job fits in one tile, so every zoom
  shows the *same* imagery, scaled; the page names only tiles that exist, so nothing is asked
  for in vain. Files, not the local tile server: the page must work from ``file://`` after
  ``up`` has stopped, offline, on another machine, and a ``file://`` page may load ``<img>``
  files beside it but can reach no server that is gone. WebP keeps transparency (no-data) at a
  tenth of PNG's size.
- **the template itself**, for a provider's server elsewhere: the page asks it for tiles at view
  time (providers usually forbid storing their tiles; a key in the query string is not kept).

Above :data:`MAX_BASEMAP_TILES` zoom-18 tiles no files are written (and the page has no imagery
for a file source): the page would be hundreds of megabytes.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

from looking_glass.errors import LookingGlassError
from looking_glass.grid import ZOOM

__all__ = [
    "MAX_BASEMAP_TILES", "TILES_DIR", "BasemapError", "Fetch", "http_fetcher", "source_fetcher",
    "wants_files", "write_basemap",
]

Fetch = Callable[[int, int, int], "bytes | None"]  # (z, x, y) -> an encoded image, or None
MAX_BASEMAP_TILES = 4096
TILES_DIR = "map_tiles"
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
WEBP_QUALITY = 80


class BasemapError(LookingGlassError, RuntimeError):
    """The imagery source cannot be opened for the map (a missing file, not a GeoTIFF, no access)."""


def is_template(source: str) -> bool:
    """Whether ``source`` is an XYZ/TMS URL template (``{z}``/``{x}``/``{y}``), not a GeoTIFF."""
    return source.startswith(("http://", "https://")) and "{z}" in source


def wants_files(source: str) -> bool:
    """Whether the map shows ``source`` from files written beside it (GeoTIFFs, mosaics and
    templates on this machine) rather than from the source itself at view time."""
    if not is_template(source):
        return True
    return (urlsplit(source).hostname or "") in LOCAL_HOSTS


def http_fetcher(template: str, timeout_s: float = 10.0) -> Fetch:
    """A fetcher of ``template``'s tiles (``{-y}`` for TMS rows): the body of a 200 answer, None
    for anything else (a missing background tile leaves a gap, it does not fail the map)."""
    import requests

    session = requests.Session()

    def fetch(z: int, x: int, y: int) -> bytes | None:
        url = template.replace("{-y}", str(2**z - 1 - y)).format(x=x, y=y, z=z)
        try:
            resp = session.get(url, timeout=timeout_s)
        except requests.RequestException:
            return None
        return resp.content if resp.status_code == 200 and resp.content else None

    return fetch


def source_fetcher(source: str, session=None, bands: tuple[int, ...] | None = None) -> Fetch:
    """A fetcher of ``source``: :func:`http_fetcher` for a template; for a GeoTIFF/COG or mosaic
    (local, or ``s3://`` read with the boto3 ``session``) its tiles as RGBA PNG, transparent
    where it has no data, read with :func:`looking_glass.imagery.mosaic.open_geotiff_source`,
    the reader the workers use, with the job's ``bands`` (None: the default choice) and so the
    same band choice and stretch as the pixels the model saw. Raises :class:`BasemapError` if the
    GeoTIFF cannot be opened."""
    if is_template(source):
        return http_fetcher(source)
    from looking_glass.imagery.geotiff import GeoTiffError
    from looking_glass.imagery.mosaic import open_geotiff_source

    try:
        image = open_geotiff_source(source, bands=bands, session=session if "s3://" in source else None)
    except GeoTiffError as exc:
        raise BasemapError(f"imagery {source}: {exc}", exit_code=exc.exit_code) from None

    def fetch(z: int, x: int, y: int) -> bytes | None:
        return image.png(x, y, z)

    return fetch


def _save(image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, "WEBP", quality=WEBP_QUALITY, method=4)


def _level_up(level: set[tuple[int, int]], z: int, root: Path) -> set[tuple[int, int]]:
    """Write zoom ``z - 1`` from the zoom-``z`` tiles ``level`` (x, y) in ``root``: each parent is
    its 2x2 children halved; returns the parents written."""
    from PIL import Image

    parents: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for x, y in level:
        parents.setdefault((x // 2, y // 2), []).append((x, y))
    for (px, py), children in parents.items():
        canvas = Image.new("RGBA", (512, 512), (0, 0, 0, 0))
        for x, y in children:
            with Image.open(root / str(z) / str(x) / f"{y}.webp") as child:
                canvas.paste(child.convert("RGBA"), ((x - 2 * px) * 256, (y - 2 * py) * 256))
        _save(canvas.resize((256, 256), Image.LANCZOS), root / str(z - 1) / str(px) / f"{py}.webp")
    return set(parents)


def write_basemap(out_dir: Path, tiles: Iterable[tuple[int, int]], fetch: Fetch,
                  max_tiles: int = MAX_BASEMAP_TILES, threads: int = 8) -> dict | None:
    """Write the imagery of the zoom-18 ``tiles`` (x, y) under ``out_dir/map_tiles`` (see the
    module docstring). Returns ``{"template", "min_zoom", "max_zoom", "available", "written"}``
    (``available``: the ``"z/x/y"`` of every file, for the page), or None when there are more
    than ``max_tiles`` tiles or no tile had imagery."""
    from PIL import Image

    tiles = sorted(set(tiles))
    if not tiles or len(tiles) > max_tiles:
        return None
    root = out_dir / TILES_DIR

    def one(tile: tuple[int, int]) -> tuple[int, int] | None:
        x, y = tile
        data = fetch(ZOOM, x, y)
        if not data:
            return None
        try:
            with Image.open(io.BytesIO(data)) as img:
                _save(img.convert("RGBA"), root / str(ZOOM) / str(x) / f"{y}.webp")
        except OSError:  # not an image (an HTML error page): a gap, as in the workers' reading
            return None
        return tile

    with ThreadPoolExecutor(threads) as pool:
        level = {t for t in pool.map(one, tiles) if t is not None}
    if not level:
        return None
    available = [f"{ZOOM}/{x}/{y}" for x, y in sorted(level)]
    z = ZOOM
    while len(level) > 1:  # down to the zoom where the whole job is one tile (zoom 0 at worst)
        level = _level_up(level, z, root)
        z -= 1
        available += [f"{z}/{x}/{y}" for x, y in sorted(level)]
    return {
        "template": f"{TILES_DIR}/{{z}}/{{x}}/{{y}}.webp",
        "min_zoom": z,
        "max_zoom": ZOOM,
        "available": available,
        "written": len(available),
    }

