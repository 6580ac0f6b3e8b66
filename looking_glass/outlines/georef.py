"""World pixel coordinates <-> lon/lat, metres per pixel and latitude-correct areas.

Outlines are built in *world pixel* coordinates: at zoom ``z`` with ``size`` pixel tiles, the
pixel corner ``(col, row)`` of tile ``x/y`` is the world pixel ``(x * size + col, y * size + row)``
(x east, y south, origin at the north-west corner of the web-mercator world). Polygons traced along
pixel edges therefore have integer vertices, and two tiles' pieces of one building share their
edge coordinates exactly, which makes stitching an exact union.

Web mercator is conformal, so right angles and simplification tolerances in pixels are the same
on the ground; lengths and areas scale with ``cos(lat)`` and ``cos(lat)**2``
(:func:`looking_glass.grid.ground_resolution_m`). Over one building the scale varies by less
than 1e-5 relative at zoom 18, so a polygon's area is its pixel area times the pixel area at its
centroid's latitude.

Conversions use :mod:`looking_glass.grid` (``lon_of_col``, ``lat_of_row_edge``, ``col_of_lon``,
``row_of_lat``, ``ground_resolution_m``); nothing here re-derives the projection.
"""

from __future__ import annotations

import numpy as np
import shapely
from shapely.geometry.polygon import orient

from looking_glass.grid import (
    EQUATOR_M_PER_PX_Z0,
    TILE_SIZE,
    col_of_lon,
    ground_resolution_m,
    lat_of_row_edge,
    lon_of_col,
    row_of_lat,
)

__all__ = [
    "area_m2",
    "lonlat_to_world_px",
    "m_per_px",
    "px_area_m2",
    "rfc7946",
    "rfc7946_all",
    "tile_of_world_px",
    "to_lonlat",
    "to_world_px",
    "world_px_to_lonlat",
]


def world_px_to_lonlat(coords: np.ndarray, zoom: int, size: int = TILE_SIZE) -> np.ndarray:
    """(N, 2) world pixel (x, y) at ``zoom`` with ``size`` px tiles -> (N, 2) lon/lat degrees."""
    c = np.asarray(coords, dtype=float).reshape(-1, 2)
    return np.column_stack([lon_of_col(c[:, 0] / size, zoom), lat_of_row_edge(c[:, 1] / size, zoom)])


def lonlat_to_world_px(coords: np.ndarray, zoom: int, size: int = TILE_SIZE) -> np.ndarray:
    """(N, 2) lon/lat degrees -> (N, 2) world pixels (latitudes clamped to web mercator's limit)."""
    c = np.asarray(coords, dtype=float).reshape(-1, 2)
    return np.column_stack([col_of_lon(c[:, 0], zoom) * size, row_of_lat(c[:, 1], zoom) * size])


def rfc7946(geom):
    """``geom`` with RFC 7946 ring orientation: exterior rings counter-clockwise, holes clockwise
    (in lon/lat). Polygons and MultiPolygons are re-oriented, other geometries returned as is."""
    if geom is None or geom.is_empty:
        return geom
    if geom.geom_type == "Polygon":
        return orient(geom, 1.0)
    if geom.geom_type == "MultiPolygon":
        return shapely.MultiPolygon([orient(p, 1.0) for p in geom.geoms])
    return geom


def rfc7946_all(geoms: np.ndarray) -> np.ndarray:
    """:func:`rfc7946` of every geometry of an array (vectorised with shapely >= 2.1)."""
    if hasattr(shapely, "orient_polygons"):
        return shapely.orient_polygons(geoms, exterior_cw=False)
    out = np.empty(len(geoms), dtype=object)
    out[:] = [rfc7946(g) for g in geoms]
    return out


def to_lonlat(geom, zoom: int, size: int = TILE_SIZE):
    """A shapely geometry (or an array of them) in world pixels -> the same in lon/lat degrees,
    RFC 7946 oriented."""
    moved = shapely.transform(geom, lambda xy: world_px_to_lonlat(xy, zoom, size))
    return rfc7946_all(moved) if isinstance(moved, np.ndarray) else rfc7946(moved)


def to_world_px(geom, zoom: int, size: int = TILE_SIZE):
    """A shapely geometry (or array of them) in lon/lat degrees -> world pixels at ``zoom``."""
    return shapely.transform(geom, lambda xy: lonlat_to_world_px(xy, zoom, size))


def m_per_px(world_py, zoom: int, size: int = TILE_SIZE):
    """Ground metres per pixel at world pixel row(s) ``world_py`` (scalar or array) of a ``size``
    px tile grid at ``zoom``."""
    if np.ndim(world_py) == 0:
        return ground_resolution_m(float(lat_of_row_edge(world_py / size, zoom)), zoom) * TILE_SIZE / size
    return np.sqrt(px_area_m2(world_py, zoom, size))


def px_area_m2(world_py, zoom: int, size: int = TILE_SIZE):
    """Ground area in m2 of one pixel at world pixel row(s) ``world_py`` (scalar or array)."""
    lat = lat_of_row_edge(np.asarray(world_py, dtype=float) / size, zoom)
    res = EQUATOR_M_PER_PX_Z0 * np.cos(np.radians(lat)) / 2**zoom * TILE_SIZE / size
    return res * res


def area_m2(geom_px, zoom: int, size: int = TILE_SIZE):
    """Ground area in m2 of world-pixel geometries (one or an array): pixel area times the pixel
    area at each geometry's centroid latitude (relative error < 1e-5 for building-sized shapes)."""
    a = shapely.area(geom_px)
    cy = shapely.get_y(shapely.centroid(geom_px))
    cy = np.where(np.isfinite(cy), cy, 0.0)
    return a * px_area_m2(cy, zoom, size)


def tile_of_world_px(px: float, py: float, zoom: int, size: int = TILE_SIZE) -> tuple[int, int, int]:
    """The (z, x, y) tile holding world pixel (px, py) (a point on a west/north edge belongs to
    the tile east/south of it)."""
    return zoom, int(np.floor(px / size)), int(np.floor(py / size))
