"""Errors and warnings of the outlines package."""

from __future__ import annotations

from looking_glass.errors import EXIT_BAD_INPUT, LookingGlassError

__all__ = ["EmptyReferenceWarning", "ExtentWarning", "InvalidGeometryWarning", "OutlinesError"]


class OutlinesError(LookingGlassError, ValueError):
    """Bad input to outlining, stitching, export, evaluation or the mapping gap (the message says
    which file or argument and why)."""

    exit_code = EXIT_BAD_INPUT


class InvalidGeometryWarning(UserWarning):
    """A polygon layer held geometries that cannot be used (invalid or unreadable); they were
    skipped and the message names them."""


class EmptyReferenceWarning(UserWarning):
    """A mapped-buildings reference held no building within the area compared (almost always the
    wrong file or area); the message names the file."""


class ExtentWarning(UserWarning):
    """Reference buildings lie outside the predictions' extent and are scored as misses; the
    message gives the count."""
