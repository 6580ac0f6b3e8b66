"""The tile cover of an AOI within the job's limits: what the enumerator runs and ``validate`` says.

One function, :func:`cover_within_limits`, so the Lambda and the CLI refuse the same AOIs with the
same reasons. The limits are checked from cheap bounds *before* the cover runs, so an AOI of a few
hundred bytes whose edges cross most of the world's tile rows is refused in milliseconds and a few
megabytes, never after gigabytes of work:

* **Tile cap.** A lower bound on the tile count: the AOI's area in tile units (tiles have equal
  area in web mercator, and the tiles of the cover contain the AOI), and the tile rows any one of
  its polygons spans (each row it spans holds at least one of its tiles). Above the cap: refused
  with "AOI covers at least N tiles, above the cap ...". Else the cover runs and its exact count
  is checked against the same cap ("AOI covers N tiles, above the cap ...").
* **Work cap.** The cover's work and memory grow with the tile rows its edges cross, summed over
  the edges (about 100 bytes each). Above ``MAX_EDGE_ROWS`` the AOI is refused (simplify or split
  it) even when its tile count would be within the cap.
* **Zero tiles.** A cover with no tile is refused ("AOI covers no tiles").

The vertex and polygon caps are checked while the AOI is read (:mod:`looking_glass.tiling.aoi`).
"""

from __future__ import annotations

import numpy as np
import shapely

from looking_glass.grid import col_of_lon, row_of_lat
from looking_glass.tiling.aoi import AoiError
from looking_glass.tiling.cover import count_tiles, tile_runs

__all__ = [
    "MAX_EDGE_ROWS",
    "TileCapError",
    "cover_within_limits",
    "edge_rows",
    "job_tile_cap",
    "tile_count_lower_bound",
]

# Tile rows crossed by the AOI's edges, summed over the edges: about 100 bytes of cover work each,
# so 3 million keep the cover near 300 MB, well inside the enumerator Lambda's 1024 MB.
MAX_EDGE_ROWS = 3_000_000


class TileCapError(AoiError):
    """The AOI covers more tiles than the cap; ``tiles`` is the count (or its lower bound)."""

    def __init__(self, message: str, tiles: int):
        super().__init__(message)
        self.tiles = tiles


def job_tile_cap(environ=None) -> int:
    """The tile cap the enumerator applies (``LG_MAX_TILES_PER_JOB``, else its default), for the
    commands that check an AOI before it is uploaded; a value the enumerator would refuse is
    refused here too (SettingsError naming the variable), not silently replaced by the default."""
    from looking_glass.runtime.settings import max_tiles_per_job

    return max_tiles_per_job(environ)


def _tile_space(geometry: shapely.Geometry, zoom: int) -> shapely.Geometry:
    """The geometry with x in tile columns and y in tile rows (web mercator, scaled)."""

    def to_tiles(coords: np.ndarray) -> np.ndarray:
        return np.column_stack([col_of_lon(coords[:, 0], zoom), row_of_lat(coords[:, 1], zoom)])

    return shapely.transform(geometry, to_tiles)


def tile_count_lower_bound(geometry: shapely.Geometry, zoom: int) -> int:
    """A lower bound on the number of tiles covering ``geometry`` (lon/lat): the larger of its
    area in tile units (less 1% for edges, straight in lon/lat, drawn as curves in mercator) and
    the rows spanned by its tallest polygon."""
    tiles = _tile_space(geometry, zoom)
    by_area = int(tiles.area * 0.99)
    parts = shapely.get_parts(tiles)
    bounds = shapely.bounds(parts)
    by_rows = int(np.max(np.floor(bounds[:, 3] - bounds[:, 1]))) if len(parts) else 0
    return max(by_area, by_rows)


def edge_rows(geometry: shapely.Geometry, zoom: int) -> int:
    """Tile rows crossed by the edges of ``geometry`` (lon/lat), summed over the edges."""
    rings = shapely.get_rings(shapely.get_parts(geometry))
    coords, ring_of = shapely.get_coordinates(rings, return_index=True)
    rows = row_of_lat(coords[:, 1], zoom)
    same = ring_of[:-1] == ring_of[1:]
    spans = np.abs(np.floor(rows[1:]) - np.floor(rows[:-1]))[same] + 1
    return int(spans.sum())


def cover_within_limits(geometry: shapely.Geometry, zoom: int, max_tiles: int) -> np.ndarray:
    """The cover (runs of :func:`looking_glass.tiling.cover.tile_runs`) of a validated AOI
    geometry, or :class:`AoiError` with the reason (see the module docstring): the tile cap from
    cheap bounds first, then the work cap, then the exact count and zero tiles."""
    cap_text = f"the cap of {max_tiles:,} tiles per job (LG_MAX_TILES_PER_JOB)"
    at_least = tile_count_lower_bound(geometry, zoom)
    if at_least > max_tiles:
        raise TileCapError(f"AOI covers at least {at_least:,} tiles, above {cap_text}", at_least)
    crossed = edge_rows(geometry, zoom)
    if crossed > MAX_EDGE_ROWS:
        raise AoiError(
            f"AOI's edges cross {crossed:,} tile rows in all, above the {MAX_EDGE_ROWS:,} one job can "
            "cover: simplify its outline or split it into several AOIs"
        )
    runs = tile_runs(geometry, zoom)
    total = count_tiles(runs)
    if total == 0:
        raise AoiError("AOI covers no tiles")
    if total > max_tiles:
        raise TileCapError(f"AOI covers {total:,} tiles, above {cap_text}", total)
    return runs
