"""User text (AOI names, warnings, reasons) as it is shown: printed to a terminal or drawn.

Names and other text users or providers send are stored as given, but wherever they are printed or
drawn they go through :func:`shown`, so they cannot forge output: terminal control sequences,
newlines, and other invisible or layout-changing characters (Unicode categories Cc, Cf, Cs, Co, Cn,
Zl, Zp: e.g. ESC, BEL, right-to-left overrides) appear as Python escapes (``\\x1b``, ``\\n``,
``\\u202e``). Figures draw user text with mathtext off (matplotlib's ``parse_math=False``), so a
``$...$`` in a name is drawn as written.
"""

from __future__ import annotations

import unicodedata

__all__ = ["shown"]

_HIDDEN = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}


def _escape(ch: str) -> str:
    code = ord(ch)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def shown(text, limit: int | None = None) -> str:
    """``text`` (any value: ``str()`` of it) safe to print or draw: hidden and control characters
    escaped; with ``limit``, cut to that many characters with an ellipsis."""
    text = "" if text is None else str(text)
    out = "".join(_escape(ch) if unicodedata.category(ch) in _HIDDEN else ch for ch in text)
    if limit is not None and len(out) > limit:
        out = out[: max(limit - 1, 0)] + "\u2026"
    return out
