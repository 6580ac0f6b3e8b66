"""What the command modules share: option types, the AOI reader and the command's own error.

Option types turn argparse text into typed values with the parsers of
:mod:`looking_glass.runtime.parsing` (worded for options: argparse names the flag, the message
names the value and the accepted range), so a bad value ends the command with exit code 2.
"""

from __future__ import annotations

import argparse
import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from looking_glass.errors import EXIT_BAD_INPUT, EXIT_FAILURE, LookingGlassError
from looking_glass.runtime.parsing import ARGUMENT, ParseError, Parsers

if TYPE_CHECKING:
    from looking_glass.tiling.aoi import Aoi

__all__ = [
    "JOB_HELP", "CommandError", "OutputPathError", "add_target", "map_imagery", "aws_guard", "non_negative_float", "output_file", "output_folder",
    "fraction", "non_negative_int", "port", "positive_float", "positive_int", "read_aoi", "resolve_job_ref",
    "rollup_zoom", "zoom",
]

MAX_ZOOM = 24  # the deepest zoom an option accepts (``--zoom``)
JOB_HELP = ("job id, the start of one, or the job's name (as `jobs` lists them); "
            "add @latest for the newest of several (NAME@latest)")

_OPTION = Parsers(ParseError, ARGUMENT)


class CommandError(LookingGlassError):
    """A command cannot run with what it was given (a missing file, options that do not go
    together, an unknown job id); the message says which. Exit status 2 (bad input), except
    where AWS fails (:func:`aws_guard`: 1)."""

    exit_code = EXIT_BAD_INPUT


def _option(parse: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    try:
        return parse(*args, **kwargs)
    except ParseError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def positive_int(text: str) -> int:
    """Option type: an integer of at least 1."""
    return _option(_OPTION.integer, "", text, 1)


def positive_float(text: str) -> float:
    """Option type: a number greater than 0 (``inf`` included)."""
    return _option(_OPTION.number, "", text, 0, None, True, finite=False)


def non_negative_float(text: str) -> float:
    """Option type: a finite number of at least 0."""
    return _option(_OPTION.number, "", text, 0, None)


def non_negative_int(text: str) -> int:
    """Option type: an integer of at least 0 (a seed)."""
    return _option(_OPTION.integer, "", text, 0)


def fraction(text: str) -> float:
    """Option type: a fraction, 0..1 (both included)."""
    return _option(_OPTION.number, "", text, 0, 1)


def port(text: str) -> int:
    """Option type: a TCP port, 0..65535 (0: any free port)."""
    return _option(_OPTION.integer, "port", text, 0, 65535)


def zoom(text: str) -> int:
    """Option type: a tile zoom to cover an AOI at, 0..24 (:data:`MAX_ZOOM`)."""
    return _option(_OPTION.integer, "zoom", text, 0, MAX_ZOOM)


def rollup_zoom(text: str) -> int:
    """Option type: a zoom to roll a job's results up to, 0..18 (``grid.ZOOM``: jobs run on
    zoom-18 tiles, so no finer zoom exists); the one definition of that range for ``results
    --zoom`` and ``map --zoom``."""
    from looking_glass.grid import ZOOM

    return _option(_OPTION.integer, "zoom", text, 0, ZOOM)


class OutputPathError(CommandError):
    """An output path (``--out``, ``--dir``, ``--embedded``, ``--root``) that cannot be written: a
    file stands where a folder should be (or the reverse), or the nearest existing folder is not
    writable. Raised by the option types below while the command line is read, and not an
    ``ArgumentTypeError``, so the command ends with one ``error:`` line and exit status 2 and no
    usage block (:func:`looking_glass.cli.main.main`): the usage says nothing about a folder."""


def _creatable_below(text: str, path: Path) -> None:
    """OutputPathError unless the folders up to ``path`` can be made: its nearest existing
    ancestor (``path`` itself included) is a folder this process may write in."""
    base = path
    while not base.exists() and base != base.parent:
        base = base.parent
    if not base.is_dir():
        raise OutputPathError(f"cannot write {text}: {base} is a file, not a folder")
    if not os.access(base, os.W_OK | os.X_OK):
        raise OutputPathError(f"cannot write {text}: no permission to write in the folder {base}")


def output_folder(text: str) -> str:
    """Option type: a folder to write in (``--out DIR``), made with its parents when missing (by
    the command, when it writes). Refused (OutputPathError, exit 2) when the path is an existing
    file, or a file stands where a folder on its way should be, or the nearest existing folder
    cannot be written; returns ``text``."""
    path = Path(text).expanduser()
    if path.exists() and not path.is_dir():
        raise OutputPathError(f"cannot write in {text}: it exists and is not a folder")
    _creatable_below(text, path)
    return text


def output_file(text: str) -> str:
    """Option type: a file to write (``--out FILE``), replaced if it exists; missing folders on
    its way are made when it is written (:func:`looking_glass.runtime.atomic.atomic_output`), as
    :func:`output_folder` makes a folder: one rule for every command. Refused (OutputPathError,
    exit 2) when the path is a folder, a file stands where a folder on its way should be, or it
    cannot be written; returns ``text``."""
    path = Path(text).expanduser()
    if path.is_dir():
        raise OutputPathError(f"cannot write {text}: it is a folder, not a file")
    _creatable_below(text, path.parent)
    if path.exists() and not os.access(path, os.W_OK):
        raise OutputPathError(f"cannot write {text}: permission denied")
    return text


def read_aoi(path: str) -> tuple[bytes, Aoi]:
    """The AOI file's bytes and its parsed AOI (named after the file when it has no name).

    Raises :class:`CommandError` if the file is missing, :class:`AoiError` (naming the file) if
    the AOI cannot be used.
    """
    # Imported here, not at the top: it loads shapely, which only the commands that read an AOI
    # need, and every command imports this module (tests/unit/cli/test_cli_start_up.py).
    from looking_glass.tiling.aoi import AoiError, parse_aoi

    p = Path(path)
    if not p.is_file():
        raise CommandError(f"AOI file {path} not found")
    data = p.read_bytes()
    try:
        return data, parse_aoi(data, default_name=p.stem)
    except AoiError as exc:
        raise AoiError(f"{path}: {exc}") from None


def aws_guard(func):
    """A command decorator: AWS failures (endpoint down, access denied, throttling past
    retries) end it as one clear line."""

    @functools.wraps(func)
    def run(args) -> int:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return func(args)
        except ClientError as exc:
            err = exc.response.get("Error", {})
            raise CommandError(f"AWS refused {exc.operation_name}: {err.get('Code')}: {err.get('Message')}",
                               exit_code=EXIT_FAILURE) from None
        except BotoCoreError as exc:
            raise CommandError(f"cannot reach AWS: {exc}", exit_code=EXIT_FAILURE) from None

    return run


def add_target(p) -> None:
    """Add ``--stack [NAME]`` / ``--embedded STATE`` (which deployment a job command reads) to ``p``."""
    group = p.add_mutually_exclusive_group()
    group.add_argument("--stack", nargs="?", const="", metavar="NAME",
                       help="a deployed stack: reads the outputs of NAMEStorage, NAMEInference, ... "
                            "(NAME defaults to LookingGlass)")
    group.add_argument("--embedded", metavar="STATE",
                       help="state file of `looking-glass up` (default ~/.looking-glass/embedded.json); "
                            "the default target when --stack is not given")


def resolve_job_ref(store, text: str) -> str:
    """The id of the job ``text`` means in the results store ``store``: one rule for every command
    that takes a job (:func:`looking_glass.pipeline.jobref.resolve_job`; ``NAME@latest`` says on
    stderr which of several it took). Raises JobRefError (exit status 2) for none or several."""
    import sys

    from looking_glass.pipeline.jobref import resolve_job

    return resolve_job(store, text, note=lambda line: print(line, file=sys.stderr))


def map_imagery(dep, store, job_id: str, given: str | None):
    """The imagery under a job's map, as an ImagerySource (its ``bands`` are the GeoTIFF bands
    the workers read) or None: ``--imagery`` (a registered source's name, or a template or
    GeoTIFF/mosaic as given), else the definition the job ran on (its record's
    ``imagery_source``), else the source registered under its name (the default's too, with its
    bands: a stack's ImagerySources output), else the deployment's default imagery (the embedded
    run's tile server), else what the job's first tile recorded. Shared by ``map`` and
    ``export`` (its attribution), which credit the same source."""
    from looking_glass.runtime.imagery_sources import ImagerySource, ImagerySourcesError, parse_source_entry

    registry = getattr(dep, "imagery", None)
    known = registry.sources if registry is not None else {}
    if given is not None:
        if given in known:
            return known[given]
        # As demo/up/prepare check --imagery (one validator, one wording: an unknown placeholder,
        # a GeoTIFF that is missing or not georeferenced), before anything is drawn.
        from looking_glass.local.inputs import validate_imagery

        validate_imagery(given, session=dep.data_session())
        return ImagerySource("", given)
    job = store.get_job(job_id) or {}
    name, recorded = job.get("imagery") or "", job.get("imagery_source")
    if name and isinstance(recorded, dict):
        try:
            return parse_source_entry(name, recorded)
        except ImagerySourcesError:
            pass  # written by another version: the lookups below
    if name in known:  # a job from before that record: the source registered under its name now
        return known[name]
    if dep.tile_url_template:
        return ImagerySource(name, dep.tile_url_template)
    first = next(store.query_tiles(job_id, attributes=("imagery",)), None)
    return ImagerySource(name, first["imagery"]) if first and first.get("imagery") else None
