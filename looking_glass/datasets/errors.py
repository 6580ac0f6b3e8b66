"""The error of data preparation and the chip format."""

from __future__ import annotations

from looking_glass.errors import EXIT_BAD_INPUT, LookingGlassError

__all__ = ["DatasetError", "PrepareError"]


class PrepareError(LookingGlassError, ValueError):
    """Bad input or configuration for data preparation (the message says which and why)."""

    exit_code = EXIT_BAD_INPUT


class DatasetError(LookingGlassError, ValueError):
    """A folder given as a prepared dataset is not one: missing, not a folder, no manifest.json,
    or a manifest that is not valid JSON or not a looking-glass-chips manifest (says which)."""

    exit_code = EXIT_BAD_INPUT
