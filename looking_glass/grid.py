"""The tile grid: one definition of zoom, tile size, ground resolution, the lon/lat <-> tile
projection, tile areas and the tile's square.

Everything in Looking Glass (the enumerator, the worker, the stacks, the demo) works on the
web-mercator XYZ grid at ``ZOOM`` with ``TILE_SIZE`` pixel tiles. Area is always computed with the
latitude-correct ground resolution; the 2018 original used a fixed 0.31 m pixel, which is only
right near 21 degrees of latitude.

Sources of the facts: web mercator (EPSG:3857) on a sphere of the WGS 84 equatorial radius
6378137 m; the XYZ/"slippy map" tile scheme (x east from -180 degrees, y south from
+85.0511 degrees, 2**zoom tiles per side); ground resolution 156543.03392 * cos(lat) / 2**zoom
m/px for 256 px tiles (Bing Maps Tile System). Tile bounds and quadkeys come from ``mercantile``.
"""

from __future__ import annotations

import math

import mercantile
import numpy as np

ZOOM = 18
TILE_SIZE = 256

# WGS 84 semi-major axis, the radius of the web-mercator sphere (EPSG:3857), in metres.
EARTH_RADIUS_M = 6378137.0
# Equatorial ground resolution at zoom 0 for 256 px tiles: 2*pi*6378137 / 256.
EQUATOR_M_PER_PX_Z0 = 156543.03392
# Web mercator cannot represent the poles; tiles stop at this latitude.
MAX_LATITUDE = 85.0511287798066


def ground_resolution_m(lat: float, zoom: int = ZOOM) -> float:
    """Metres per pixel along a parallel at latitude ``lat`` (degrees) for 256 px tiles:
    ``156543.03392 * cos(lat) / 2**zoom``."""
    return EQUATOR_M_PER_PX_Z0 * math.cos(math.radians(lat)) / (2**zoom)


# ---- lon/lat <-> tile coordinates ----------------------------------------------------------------
# Tile coordinates are fractional: column x grows east from -180 degrees, row y grows south from
# MAX_LATITUDE; tile (x, y) covers [x, x+1) x [y, y+1). Both functions take scalars or arrays.


def col_of_lon(lon, zoom: int):
    """Fractional tile column of longitude ``lon`` (degrees): ``(lon + 180) / 360 * 2**zoom``."""
    return (lon + 180.0) * (2**zoom / 360.0)


def lon_of_col(x, zoom: int):
    """Longitude (degrees) of the west edge of (possibly fractional) tile column ``x``, the
    inverse of :func:`col_of_lon`."""
    return x / 2**zoom * 360.0 - 180.0


def row_of_lat(lat, zoom: int):
    """Fractional tile row of latitude ``lat`` (degrees), the inverse of :func:`lat_of_row_edge`.

    Latitudes are first clamped to +-``MAX_LATITUDE`` (web mercator's limit), so the row is always
    within [0, 2**zoom]. Mercator y = ln(tan(lat) + sec(lat)) = artanh(sin(lat)).
    """
    lat_r = np.radians(np.clip(lat, -MAX_LATITUDE, MAX_LATITUDE))
    return (1 - np.arctanh(np.sin(lat_r)) / np.pi) * (2**zoom / 2)


def lat_of_row_edge(row, zoom: int):
    """Latitude (degrees) of the top edge of (possibly fractional) tile row ``row``:
    ``degrees(atan(sinh(pi * (1 - 2 * row / 2**zoom))))``. Scalars or arrays."""
    return np.degrees(np.arctan(np.sinh(np.pi * (1 - 2 * np.asarray(row, dtype=float) / 2**zoom))))


def tile_center_lat(x: int, y: int, zoom: int) -> float:
    """Latitude of the centre of tile x/y: mercator is conformal, so this is where the pixel
    area of the tile is evaluated (the error across one zoom-18 tile is below 1e-5 relative)."""
    return float(lat_of_row_edge(y + 0.5, zoom))


def tile_resolution_m(x: int, y: int, zoom: int = ZOOM) -> float:
    """Metres per pixel of a 256 px tile x/y/zoom at its centre latitude (the ground resolution a
    chip or tile of it is treated as having)."""
    return ground_resolution_m(tile_center_lat(x, y, zoom), zoom)


# ---- areas ------------------------------------------------------------------------------------
def pixel_area_m2(x: int, y: int, zoom: int = ZOOM) -> float:
    """Ground area of one pixel of tile x/y/zoom in square metres (at the tile's centre latitude)."""
    res = tile_resolution_m(x, y, zoom)
    return res * res


def pixel_row_areas_m2(x: int, y: int, zoom: int = ZOOM, size: int = TILE_SIZE):
    """Ground area of one pixel in each of the ``size`` pixel rows of tile x/y (top to bottom),
    a (size,) float64 array in square metres.

    Uses each row's own centre latitude, so area sums are exact to well below a part per million
    even at high latitudes where cos(lat) changes quickly across a tile.
    """
    lats = lat_of_row_edge(y + (np.arange(size) + 0.5) / size, zoom)
    res = EQUATOR_M_PER_PX_Z0 * (TILE_SIZE / size) * np.cos(np.radians(lats)) / 2**zoom
    return res * res


def tile_area_m2(y, zoom: int = ZOOM):
    """Ground area in square metres of one tile of row ``y`` (any column): the sum of its
    :func:`pixel_row_areas_m2`. ``y`` may be an int (returns a float) or an integer array
    (returns an array of the same shape)."""
    ys = np.asarray(y, dtype=np.int64)
    unique, inverse = np.unique(ys.ravel(), return_inverse=True)
    per_row = np.empty(len(unique))
    offsets = (np.arange(TILE_SIZE) + 0.5) / TILE_SIZE  # pixel-row centres, as pixel_row_areas_m2
    for start in range(0, len(unique), 4096):  # (rows, 256) blocks: bounded memory
        lats = lat_of_row_edge(unique[start : start + 4096, None] + offsets, zoom)
        res = EQUATOR_M_PER_PX_Z0 * np.cos(np.radians(lats)) / 2**zoom
        per_row[start : start + 4096] = (res * res).sum(axis=1) * TILE_SIZE
    areas = per_row[inverse].reshape(ys.shape)
    return float(areas) if np.ndim(y) == 0 else areas


# ---- tile identity and shape --------------------------------------------------------------------
def quadkey(x: int, y: int, zoom: int) -> str:
    """The tile's quadkey (Bing Maps tile system), one digit per zoom level."""
    return mercantile.quadkey(x, y, zoom)


def tile_from_quadkey(qk: str) -> tuple[int, int, int]:
    """(x, y, zoom) of a quadkey; the empty quadkey is tile 0/0/0."""
    t = mercantile.quadkey_to_tile(qk)
    return t.x, t.y, t.z


def tile_bounds(x: int, y: int, zoom: int) -> tuple[float, float, float, float]:
    """(west, south, east, north) in degrees."""
    b = mercantile.bounds(x, y, zoom)
    return b.west, b.south, b.east, b.north


def tile_mercator_bounds(x: int, y: int, zoom: int) -> tuple[float, float, float, float]:
    """(left, bottom, right, top) in web-mercator metres (EPSG:3857)."""
    b = mercantile.xy_bounds(x, y, zoom)
    return b.left, b.bottom, b.right, b.top


def tile_polygon(x: int, y: int, zoom: int) -> dict:
    """The tile's square as a GeoJSON Polygon in lon/lat degrees (RFC 7946: counter-clockwise
    exterior ring from the south-west corner, first point repeated)."""
    w, s, e, n = tile_bounds(x, y, zoom)
    return {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}


def tile_box(x: int, y: int, zoom: int, mercator: bool = False):
    """The tile's square as a shapely polygon: lon/lat degrees, or web-mercator metres when
    ``mercator`` is true."""
    import shapely

    return shapely.box(*(tile_mercator_bounds(x, y, zoom) if mercator else tile_bounds(x, y, zoom)))
