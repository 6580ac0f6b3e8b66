"""Capture dates of imagery: parsing the dates users and files give, and reading a GeoTIFF's.

A capture date comes from, first to last: the date given when the source is registered
(``NAME=SOURCE@2024-05-01``, or ``"date"`` in ``imagery_sources``), a STAC item's ``datetime``
(mosaics from a STAC item collection), or the TIFF ``DateTime`` tag (GDAL's ``TIFFTAG_DATETIME``,
written ``YYYY:MM:DD HH:MM:SS``). Dates are kept as naive UTC :class:`datetime.datetime` (for
ordering a mosaic's images, newest first) and stored with results as ISO dates (``YYYY-MM-DD``).
A date that does not parse is a :class:`CaptureDateError` naming where it came from.
"""

from __future__ import annotations

from datetime import datetime, timezone

from looking_glass.errors import LookingGlassError

__all__ = ["CaptureDateError", "iso_day", "parse_capture_date", "tiff_capture_date"]

# The TIFF 6.0 DateTime tag's layout; ISO 8601 forms are read by datetime.fromisoformat.
_TIFF_FORMAT = "%Y:%m:%d %H:%M:%S"


class CaptureDateError(LookingGlassError, ValueError):
    """A capture date that does not parse (the message names its source and the forms accepted)."""


def parse_capture_date(text: str, label: str) -> datetime:
    """``text`` as a naive UTC datetime: ``YYYY-MM-DD``, an ISO 8601 date-time (``Z`` or an
    offset is converted to UTC) or the TIFF ``YYYY:MM:DD HH:MM:SS``. Raises
    :class:`CaptureDateError` naming ``label`` (the file, item or source it came from)."""
    if not isinstance(text, str) or not text.strip():
        raise CaptureDateError(f"{label}: capture date {text!r} is not a date (use YYYY-MM-DD)")
    value = text.strip()
    try:
        parsed = datetime.strptime(value, _TIFF_FORMAT)
    except ValueError:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00") if value.endswith("Z") else value)
        except ValueError:
            raise CaptureDateError(
                f"{label}: capture date {value!r} does not parse "
                "(use YYYY-MM-DD, an ISO 8601 date-time, or the TIFF form YYYY:MM:DD HH:MM:SS)"
            ) from None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(timezone.utc).replace(tzinfo=None)
    return parsed


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
