"""Whether an AOI meets an imagery source's footprint, checked before a job starts.

A GeoTIFF or mosaic source has a known footprint (its outline in lon/lat,
:func:`looking_glass.imagery.geotiff.lonlat_footprint`). An AOI that does not touch it would run
every tile to ``no_imagery`` and end COMPLETE with nothing done, often because the AOI's
coordinates were written lat, lon. :func:`check_aoi_meets_footprint` refuses such an AOI with
one line naming the source and both bounding boxes, and says when swapping the AOI's
coordinates would make it meet the footprint.
"""

from __future__ import annotations

from looking_glass.errors import EXIT_BAD_INPUT, LookingGlassError

__all__ = ["AoiOutsideImagery", "check_aoi_meets_footprint"]


class AoiOutsideImagery(LookingGlassError, ValueError):
    """The AOI does not intersect the imagery source's footprint (exit status 2)."""

    exit_code = EXIT_BAD_INPUT


def _bbox(geometry) -> str:
    """``(west, south, east, north)`` of a lon/lat shapely geometry, 6 decimals (about 0.1 m)."""
    return "(" + ", ".join(f"{v:.6f}" for v in geometry.bounds) + ")"


def check_aoi_meets_footprint(aoi_geometry, footprint, source: str) -> None:
    """Raise :class:`AoiOutsideImagery` unless the AOI (shapely geometry, lon/lat degrees,
    EPSG:4326) intersects ``footprint`` (the imagery's footprint, same CRS); ``source`` names the
    imagery in the message. The message gives both bounding boxes (west, south, east, north) and,
    when the AOI with each position's lon and lat swapped would intersect, says so."""
    import shapely

    if aoi_geometry.intersects(footprint):
        return
    hint = ""
    swapped = shapely.transform(aoi_geometry, lambda xy: xy[:, ::-1])
    if swapped.intersects(footprint):
        hint = "; with its coordinates swapped it would: are they written [lat, lon]? GeoJSON wants [lon, lat]"
    raise AoiOutsideImagery(
        f"the AOI (bbox {_bbox(aoi_geometry)}) does not intersect the footprint of imagery {source} "
        f"(bbox {_bbox(footprint)}): every tile would be 'no imagery'{hint}"
    )
