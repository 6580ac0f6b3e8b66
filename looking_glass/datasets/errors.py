"""The error of data preparation and the chip format."""

from __future__ import annotations

from looking_glass.errors import EXIT_BAD_INPUT, LookingGlassError

__all__ = ["PrepareError"]


class PrepareError(LookingGlassError, ValueError):
    """Bad input or configuration for data preparation (the message says which and why)."""

    exit_code = EXIT_BAD_INPUT
