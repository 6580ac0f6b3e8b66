"""Capture dates of imagery: parsing the dates users and files give, and reading a GeoTIFF's.

A capture date comes from, first to last: a STAC item's ``datetime`` (mosaics from a STAC item
collection), the date given when the source is registered (``NAME=SOURCE@2024-05-01``, or
``"date"`` in ``imagery_sources``), or the TIFF ``DateTime`` tag (GDAL's ``TIFFTAG_DATETIME``,
written ``YYYY:MM:DD HH:MM:SS``). Dates are kept as naive UTC :class:`datetime.datetime` (for
ordering a mosaic's images, newest first) and stored with results as ISO dates (``YYYY-MM-DD``).
A date that does not parse is a :class:`CaptureDateError` naming where it came from (the parser
lives with the imagery registry, :mod:`looking_glass.runtime.imagery_sources`, which checks
registered dates at deploy time).
"""

from __future__ import annotations

from datetime import datetime

from looking_glass.runtime.imagery_sources import CaptureDateError, parse_capture_date

__all__ = ["CaptureDateError", "iso_day", "parse_capture_date", "tiff_capture_date"]


def tiff_capture_date(src, label: str) -> datetime | None:
    """The TIFF ``DateTime`` tag of the open rasterio dataset ``src`` (None without one);
    :class:`CaptureDateError` when it is present but does not parse (give the date when the
    source is registered instead)."""
    raw = src.tags().get("TIFFTAG_DATETIME")
    if raw is None or not raw.strip():
        return None
    try:
        return parse_capture_date(raw, label)
    except CaptureDateError as exc:
        raise CaptureDateError(
            f"{exc} (the file's TIFF DateTime tag; give the date when registering the source, "
            "NAME=SOURCE@YYYY-MM-DD, to override it)"
        ) from None


def iso_day(when: datetime | None) -> str | None:
    """``when`` as ``YYYY-MM-DD`` (what results store), None for None."""
    return None if when is None else when.date().isoformat()
