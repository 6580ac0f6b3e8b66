"""The error of data preparation and the chip format."""

from __future__ import annotations

from looking_glass.errors import LookingGlassError

__all__ = ["PrepareError"]


class PrepareError(LookingGlassError, ValueError):
    """Bad input or configuration for data preparation (the message says which and why)."""
