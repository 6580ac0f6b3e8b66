"""One family of typed parsers for every value that comes from outside the code.

Four sources hand Looking Glass text (or loosely typed JSON) that must become typed, range-checked
values: environment variables (:mod:`looking_glass.runtime.settings`), the CDK context
(``stacks.config``), SageMaker hyperparameters (the training job) and command-line arguments
(:mod:`looking_glass.cli`). They share the parsers here; what differs between them is

* the error class (``SettingsError``, ``ConfigError``, ``HyperparameterError``, or argparse's own
  error for an option), given as :class:`Parsers`'s ``error``;
* the wording, so each source keeps the messages its users know: ``LG_BATCH_SIZE=0 is outside
  [1, 1024]`` (environment, context), ``hyperparameter 'epochs': expected an integer, got 'x'``
  (SageMaker), ``0 must be at least 1`` (an option, where argparse names the flag). A
  :class:`Wording` holds these phrasings; every message names the key, the value and what is
  accepted;
* whether values arrive loosely typed (``lenient``): SageMaker sends every hyperparameter as a
  string, perhaps JSON-quoted, numbers in any notation, words in any case.

:class:`Variables` reads environment variables with defaults (unset or empty: the default).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar, NoReturn

from looking_glass.errors import EXIT_BAD_INPUT, LookingGlassError

__all__ = [
    "ARGUMENT",
    "HYPERPARAMETER",
    "KEY_EQUALS",
    "ParseError",
    "Parsers",
    "Variables",
    "Wording",
    "hyperparameter_parsers",
    "span",
    "unquote",
]

_TRUE = ("true", "1", "yes")
_FALSE = ("false", "0", "no")


class ParseError(LookingGlassError, ValueError):
    """A value that does not parse or lies outside its range. The message names the key (variable,
    context key, hyperparameter or option), the value and what is accepted."""

    exit_code = EXIT_BAD_INPUT


def span(lo: Any = None, hi: Any = None, lo_open: bool = False, hi_open: bool = False) -> str:
    """An interval as text: ``[1, 1024]``, ``(0, inf]``, ``[-inf, 1)``."""
    left = "(" if lo_open else "["
    right = ")" if hi_open else "]"
    return f"{left}{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}{right}"


def unquote(value: Any) -> Any:
    """A string stripped of blanks and, if it is JSON-encoded (``'"xception"'``, as the SageMaker
    Python SDK sends hyperparameters), decoded; any other value unchanged."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        try:
            return json.loads(text)
        except ValueError:
            return text
    return text


class Wording:
    """How one source of values phrases its errors: ``KEY=VALUE is not ...`` by default.

    Subclasses override the methods (and :attr:`what`, the names of the expected kinds) to
    phrase the same facts their own way.
    """

    #: The expected kind of value, as the messages name it.
    what: ClassVar[Mapping[str, str]] = {
        "int": "an integer",
        "float": "a number",
        "finite": "a finite number",
        "bool": "a boolean (true/false)",
        "str": "a string",
        "nonempty": "a non-empty string",
        "strings": "a list of strings",
        "bands": "a comma-separated list of band numbers",
        "band_list": "a list of band numbers",
    }

    def not_a(self, key: str, raw: Any, kind: str) -> str:
        """The value is not of the expected kind (``kind``: a key of :attr:`what`, or words)."""
        return f"{key}={raw!r} is not {self.what.get(kind, kind)}"

    def outside(self, key: str, value: Any, lo: Any, hi: Any, lo_open: bool, hi_open: bool) -> str:
        """The value parsed but lies outside its range."""
        return f"{key}={value} is outside {span(lo, hi, lo_open, hi_open)}"

    def not_one_of(self, key: str, value: Any, choices: Iterable[Any]) -> str:
        """The value is none of the accepted ones."""
        return f"{key}={value!r} is not one of {', '.join(map(str, choices))}"

    def invalid(self, key: str, raw: Any, why: str) -> str:
        """The value parsed but breaks a rule that ``why`` states."""
        return f"{key}={raw!r}: {why}"

    def empty(self, key: str) -> str:
        """A list that must not be empty is."""
        return f"{key} is empty"


class _HyperparameterWording(Wording):
    """``hyperparameter 'key': expected ..., got ...`` (the training job's messages)."""

    what: ClassVar[Mapping[str, str]] = {**Wording.what, "bool": "true or false"}

    def not_a(self, key: str, raw: Any, kind: str) -> str:
        return f"hyperparameter {key!r}: expected {self.what.get(kind, kind)}, got {raw!r}"

    def outside(self, key: str, value: Any, lo: Any, hi: Any, lo_open: bool, hi_open: bool) -> str:
        return f"hyperparameter {key!r}: {value!r} is outside {span(lo, hi, lo_open, hi_open)}"

    def not_one_of(self, key: str, value: Any, choices: Iterable[Any]) -> str:
        return f"hyperparameter {key!r}: {value!r} is not one of {list(choices)}"

    def invalid(self, key: str, raw: Any, why: str) -> str:
        return f"hyperparameter {key!r}: {raw!r}: {why}"

    def empty(self, key: str) -> str:
        return f"hyperparameter {key!r} is empty"


class _ArgumentWording(Wording):
    """Command-line option values: argparse already names the option, so the message starts with
    the value (``'x' is not an integer``, ``0 must be at least 1``, ``zoom 40 is outside 0..24``)."""

    def not_a(self, key: str, raw: Any, kind: str) -> str:
        return f"{raw!r} is not {self.what.get(kind, kind)}"

    def outside(self, key: str, value: Any, lo: Any, hi: Any, lo_open: bool, hi_open: bool) -> str:
        if hi is None and lo is not None:
            return f"{value} must be {'greater than' if lo_open else 'at least'} {lo}"
        if lo is None and hi is not None:
            return f"{value} must be {'less than' if hi_open else 'at most'} {hi}"
        if not (lo_open or hi_open):
            return f"{key} {value} is outside {lo}..{hi}".lstrip()
        return f"{key} {value} is outside {span(lo, hi, lo_open, hi_open)}".lstrip()

    def not_one_of(self, key: str, value: Any, choices: Iterable[Any]) -> str:
        return f"{value!r} is not one of {', '.join(map(str, choices))}"

    def invalid(self, key: str, raw: Any, why: str) -> str:
        return f"{raw!r}: {why}"


#: ``KEY=VALUE is not ...``: environment variables and the CDK context.
KEY_EQUALS = Wording()
#: ``hyperparameter 'KEY': expected ..., got VALUE``: the SageMaker training job.
HYPERPARAMETER = _HyperparameterWording()
#: ``VALUE is not ...`` / ``VALUE must be ...``: command-line options (argparse names the flag).
ARGUMENT = _ArgumentWording()


class Parsers:
    """Typed parsers for one source of values.

    Each parser takes the key (a variable, context key, hyperparameter or option name, used in
    messages) and the raw value, and returns the typed value or raises ``error`` with a message
    in ``wording``. ``lenient``: values may arrive JSON-quoted, booleans as any value whose text
    is true/false/1/0/yes/no, integers as ``"5.0"`` or ``"1e3"``, choices in any case (the
    SageMaker hyperparameter rules).
    """

    def __init__(
        self,
        error: type[Exception] = ParseError,
        wording: Wording = KEY_EQUALS,
        *,
        lenient: bool = False,
    ) -> None:
        self.error = error
        self.wording = wording
        self.lenient = lenient

    def fail(self, message: str) -> NoReturn:
        """Raise this source's error with ``message``."""
        raise self.error(message)

    def _check_range(self, key: str, value, lo, hi, lo_open: bool = False, hi_open: bool = False) -> None:
        # Written so that NaN is outside every bounded range.
        low_ok = lo is None or (value > lo if lo_open else value >= lo)
        high_ok = hi is None or (value < hi if hi_open else value <= hi)
        if not (low_ok and high_ok):
            self.fail(self.wording.outside(key, value, lo, hi, lo_open, hi_open))

    def integer(self, key: str, raw: Any, lo: int | None = None, hi: int | None = None) -> int:
        """An integer in ``[lo, hi]`` (a bound of ``None`` is open-ended). Accepts ints, integral
        floats and integer text; never a boolean."""
        value = unquote(raw) if self.lenient else raw
        number = _as_integer(value, self.lenient)
        if number is None:
            self.fail(self.wording.not_a(key, value, "int"))
        self._check_range(key, number, lo, hi)
        return number

    def number(
        self,
        key: str,
        raw: Any,
        lo: float | None = None,
        hi: float | None = None,
        lo_open: bool = False,
        hi_open: bool = False,
        *,
        finite: bool = True,
    ) -> float:
        """A float within the bounds (``lo_open``/``hi_open``: the bound itself is excluded).
        ``finite``: refuse inf and NaN (else they meet only the range check)."""
        value = unquote(raw) if self.lenient else raw
        if isinstance(value, bool):
            self.fail(self.wording.not_a(key, value, "float"))
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(self.wording.not_a(key, value, "float"))
        if finite and not math.isfinite(number):
            self.fail(self.wording.not_a(key, value, "finite"))
        self._check_range(key, number, lo, hi, lo_open, hi_open)
        return number

    def boolean(self, key: str, raw: Any) -> bool:
        """``True``/``False``, or the words true/false, 1/0, yes/no in any case."""
        value = unquote(raw) if self.lenient else raw
        if isinstance(value, bool):
            return value
        if isinstance(value, str) or self.lenient:
            text = str(value).strip().lower()
            if text in _TRUE:
                return True
            if text in _FALSE:
                return False
        self.fail(self.wording.not_a(key, value, "bool"))

    def choice(self, key: str, raw: Any, choices: Iterable[Any], cast: Callable[[Any], Any] = str) -> Any:
        """One of ``choices``. ``lenient``: ``cast`` first (e.g. ``int`` for numeric choices) and
        words in any case; otherwise the value must be one of them as it is."""
        choices = tuple(choices)
        value = unquote(raw) if self.lenient else raw
        picked = value
        if self.lenient:
            try:
                picked = cast(value) if not isinstance(value, bool) else None
            except (TypeError, ValueError):
                picked = None
            if isinstance(picked, str):
                picked = picked.strip().lower()
        if picked not in choices:
            self.fail(self.wording.not_one_of(key, value, choices))
        return picked

    def one_of(self, choices: Iterable[Any], cast: Callable[[Any], Any] = str) -> Callable[[str, Any], Any]:
        """A ``(key, raw) -> value`` parser for :meth:`choice` with these choices."""
        choices = tuple(choices)
        return lambda key, raw: self.choice(key, raw, choices, cast)

    def text(self, key: str, raw: Any) -> str:
        """A string, stripped; ``None`` is ``""``."""
        value = unquote(raw) if self.lenient else raw
        if value is None:
            return ""
        if not isinstance(value, str):
            self.fail(self.wording.not_a(key, value, "str"))
        return value.strip()

    def required_text(self, key: str, raw: Any) -> str:
        """A string with something besides blanks, stripped."""
        value = unquote(raw) if self.lenient else raw
        if not isinstance(value, str) or not value.strip():
            self.fail(self.wording.not_a(key, value, "nonempty"))
        return value.strip()

    def matching(self, key: str, raw: Any, pattern: re.Pattern[str], what: str) -> str:
        """``raw`` as it is, if empty or if ``pattern`` matches it (``what`` names the form in the
        message, e.g. "an SNS topic ARN")."""
        if raw is None or raw == "":
            return ""
        if not isinstance(raw, str):
            self.fail(self.wording.not_a(key, raw, "str"))
        if not pattern.match(raw):
            self.fail(self.wording.not_a(key, raw, what))
        return raw

    def text_list(self, key: str, raw: Any) -> list[str]:
        """A non-empty list of strings, or one comma-separated string; items stripped."""
        if isinstance(raw, str):  # e.g. -c instance_types=g4dn.xlarge,g5.xlarge
            raw = [part for part in (p.strip() for p in raw.split(",")) if part]
        if not isinstance(raw, (list, tuple)) or not all(isinstance(v, str) for v in raw):
            self.fail(self.wording.not_a(key, raw, "strings"))
        if not raw:
            self.fail(self.wording.empty(key))
        return [v.strip() for v in raw]

    def bands(self, key: str, raw: Any) -> tuple[int, ...] | None:
        """Image bands to show as R, G, B: one band (grey) or three, numbered from 1, as
        ``"3,2,1"`` or ``[3, 2, 1]``. ``None``, ``""`` or ``[]``: ``None`` (the image's own)."""
        if raw is None or raw == "" or raw == []:
            return None
        parts = raw.split(",") if isinstance(raw, str) else raw
        try:
            bands = tuple(int(str(b).strip()) for b in parts)
        except (TypeError, ValueError):
            self.fail(self.wording.not_a(key, raw, "bands" if isinstance(raw, str) else "band_list"))
        if len(bands) not in (1, 3) or any(b < 1 for b in bands):
            self.fail(self.wording.invalid(key, raw, "give 1 band (grey) or 3 bands (R,G,B), numbered from 1"))
        return bands


def _as_integer(value: Any, lenient: bool) -> int | None:
    """``value`` as an int, or ``None`` if it is not one (booleans never are)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    if isinstance(value, int):
        return value
    if not isinstance(value, str):
        return None
    try:
        if lenient and any(c in value for c in ".eE"):
            number = float(value)
            return int(number) if number.is_integer() else None
        return int(value.strip())
    except (ValueError, OverflowError):
        return None


def hyperparameter_parsers(error: type[Exception]) -> Parsers:
    """The training job's parsers: lenient (SageMaker's strings) and worded
    ``hyperparameter 'KEY': ...``, raising ``error`` (the training's ``HyperparameterError``).

    Drop-in replacements for the old private helpers: ``_as_int`` -> ``integer``, ``_as_float``
    -> ``number``, ``_as_bool`` -> ``boolean``, ``_as_choice(choices, cast)`` ->
    ``one_of(choices, cast)``, ``_as_str`` -> ``required_text``, ``_unquote`` -> :func:`unquote`.
    """
    return Parsers(error, HYPERPARAMETER, lenient=True)


class Variables:
    """Typed reads of environment variables: an unset or empty variable takes the default, any
    other value must parse (else ``error`` naming the variable, e.g. ``LG_XLA='fast' is not a
    boolean (true/false)``)."""

    def __init__(self, environ: Mapping[str, str], error: type[Exception] = ParseError) -> None:
        self.environ = environ
        self.parse = Parsers(error, KEY_EQUALS)

    def raw(self, name: str) -> str | None:
        """The variable's text; ``None`` when unset or empty."""
        value = self.environ.get(name)
        return None if value is None or value == "" else value

    def text(self, name: str, default: str = "") -> str:
        """The variable as it is (not stripped), or ``default``."""
        value = self.raw(name)
        return default if value is None else value

    def integer(self, name: str, default: int, lo: int | None = None, hi: int | None = None) -> int:
        """An integer in ``[lo, hi]``."""
        value = self.raw(name)
        return default if value is None else self.parse.integer(name, value, lo, hi)

    def number(self, name: str, default: float, lo: float | None = None, hi: float | None = None) -> float:
        """A number in ``[lo, hi]`` (inf and NaN are outside any bounded range)."""
        value = self.raw(name)
        if value is None:
            return default
        return self.parse.number(name, value, lo, hi, finite=lo is None or hi is None)

    def boolean(self, name: str, default: bool) -> bool:
        """true/false, 1/0 or yes/no."""
        value = self.raw(name)
        return default if value is None else self.parse.boolean(name, value)

    def choice(self, name: str, default: str, choices: Iterable[str]) -> str:
        """One of ``choices``, exactly."""
        return self.parse.choice(name, self.text(name, default), choices)

    def bands(self, name: str) -> tuple[int, ...] | None:
        """One or three 1-based band numbers, comma-separated; ``None`` when unset."""
        return self.parse.bands(name, self.raw(name))

    def matching(self, name: str, pattern: re.Pattern[str], what: str) -> str:
        """The variable as it is, if unset or if ``pattern`` matches it; ``what`` names the form."""
        return self.parse.matching(name, self.text(name), pattern, what)
