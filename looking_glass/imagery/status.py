"""Tile statuses: what became of one tile. The vocabulary of imagery sources, the worker, the
results table and every results view.

Every status is final: a tile with one of these has its stored result and is never processed
again for its job. ``TILE_STATUSES`` lists them in the order reports show them.
"""

from __future__ import annotations

__all__ = ["TILE_DONE", "TILE_FAILED", "TILE_NO_IMAGERY", "TILE_SKIPPED", "TILE_STATUSES"]

TILE_DONE = "done"  # the model ran; the building area is stored
TILE_FAILED = "failed"  # the imagery could not be used (HTTP error, undecodable, wrong size)
TILE_NO_IMAGERY = "no_imagery"  # the source has nothing there (HTTP 404/204, outside the GeoTIFF)
TILE_SKIPPED = "skipped"  # there is imagery but no data in it (nodata, transparent, one colour)
TILE_STATUSES = (TILE_DONE, TILE_FAILED, TILE_NO_IMAGERY, TILE_SKIPPED)
