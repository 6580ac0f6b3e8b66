"""The ``looking-glass`` command line."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from looking_glass.cli.quiet import quiet_start_up
from looking_glass.errors import LookingGlassError

BROKEN_PIPE_EXIT = 141  # 128 + SIGPIPE: what a shell reports for a reader that stopped early

# Every command, in the order --help lists them, as (module in looking_glass.cli, the function
# there that adds them, their names). Only the module of the command being run is imported:
# importing all of them (and what they import) was a tenth of what `cover` takes on a city
# (issue 14). tests/unit/cli/test_cli_structure.py checks this table against the modules.
COMMAND_GROUPS = (
    ("demo", "add_commands", ("demo",)),
    ("tiles", "add_commands", ("cover", "estimate")),
    ("data", "add_commands", ("prepare", "synth-data")),
    ("training", "add_commands", ("train", "evaluate", "plot")),
    ("tiles", "add_validate", ("validate",)),
    ("serve", "add_commands", ("serve-synthetic", "serve-tiles", "aoi")),
    ("jobs", "add_commands", ("up", "submit", "jobs", "status", "results", "retry", "map")),
    ("outlines", "add_commands", ("export",)),
    ("models", "add_commands", ("models",)),
)
# Short commands that do no linear algebra and leave nothing behind (no files, threads or
# processes; output to stdout only). OpenBLAS (loaded with numpy) starts one spinning thread per
# core at import, which on a busy machine cost `cover` a tenth of its CPU time: these run with
# OPENBLAS_NUM_THREADS=1 (set before numpy is imported; a value in the environment wins). And the
# interpreter's shutdown walks every object numpy and shapely created at import, several times
# (~0.02 s): run as a program, these freeze the collector's view of them before exiting.
SHORT_COMMANDS = frozenset({"cover", "estimate", "validate"})


class VersionAction(argparse.Action):
    """``--version``: prints ``looking-glass VERSION`` (the installed distribution's version, from
    its metadata) and exits 0. ``importlib.metadata`` is imported only when asked: it is not cheap,
    and every command's start-up would pay for it."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        """Print the version line and end the process (status 0)."""
        from importlib.metadata import PackageNotFoundError, version

        try:
            installed = version("looking-glass")
        except PackageNotFoundError:  # run from a checkout that was never installed
            installed = "unknown (not installed)"
        print(f"looking-glass {installed}")
        parser.exit(0)


class Parser(argparse.ArgumentParser):
    """The CLI's argument parser: a bad command line ends as one ``error: MESSAGE (see PROG
    --help)`` line on standard error and exit status 2, like every other bad input, instead of
    argparse's usage block. Subcommand parsers are made of this class too (``add_subparsers``
    takes the parent's class), so the rule holds for every command and option."""

    def error(self, message: str):
        """Print the one line and exit 2 (argparse calls this for every command-line error)."""
        self.exit(2, f"error: {message} (see: {self.prog} --help)\n")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command; each command module adds its own subcommands.

    With ``command`` (a name of :data:`COMMAND_GROUPS`) only that command's module is imported
    and its parser built in full; the others are placeholders that keep the top-level usage line
    and errors the same but have no options or help of their own. The top-level ``--help`` needs
    the full parser (``command`` None)."""
    parser = Parser(prog="looking-glass", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="show the libraries' start-up messages (TensorFlow, absl, oneDNN), hidden by default")
    parser.add_argument("--version", action=VersionAction, help="print the installed version and exit")
    sub = parser.add_subparsers(dest="command", required=True)
    for module, adder, names in COMMAND_GROUPS:
        if command is None or command in names:
            getattr(importlib.import_module(f"looking_glass.cli.{module}"), adder)(sub)
        else:
            for name in names:
                sub.add_parser(name)
    return parser


def command_of(argv: list[str]) -> str | None:
    """The command ``argv`` runs (its first word after ``-v``/``--verbose``), or None when that
    word is anything else (``--help``, a typo, nothing): then the whole parser is needed to
    answer it."""
    for word in argv:
        if word in ("-v", "--verbose"):
            continue
        known = any(word in names for _, _, names in COMMAND_GROUPS)
        return word if known else None
    return None


class ErrorExit(SystemExit):
    """The end of a command that failed: ``code`` is the exit status, ``str()`` the
    ``error: MESSAGE`` line (already printed to standard error)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(code)
        self.message = message

    def __str__(self) -> str:
        return self.message


def exit_for(error: LookingGlassError) -> SystemExit:
    """How a command ends on ``error``: ``error: MESSAGE`` on standard error, exit status
    ``error.exit_code``. For status 1 the message rides in the ``SystemExit`` itself (the
    interpreter prints it); for other statuses it is printed here. Either way ``str()`` of the
    exit is the message, so callers of :func:`main` can read it."""
    message = f"error: {error}"
    if error.exit_code == 1:
        return SystemExit(message)
    print(message, file=sys.stderr)
    return ErrorExit(error.exit_code, message)


def main(argv: list[str] | None = None) -> int:
    """Run ``looking-glass ARGV``; returns the exit status. Every :class:`LookingGlassError` a
    command raises ends here, as one line for the user (see :func:`exit_for`)."""
    program = argv is None  # the process's own command line (the console script, python -m)
    argv = sys.argv[1:] if argv is None else argv
    command = command_of(argv)
    if command in SHORT_COMMANDS and "numpy" not in sys.modules:  # else too late (main called in process)
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    try:  # an option type may raise one (an unusable --out: one line, no usage block)
        args = build_parser(command).parse_args(argv)
    except LookingGlassError as exc:
        raise exit_for(exc) from None
    quiet_start_up(verbose=args.verbose)
    try:
        return args.func(args)
    except LookingGlassError as exc:
        raise exit_for(exc) from None
    except BrokenPipeError:
        # The reader went away (`cover ... | head`): end quietly, as a process that SIGPIPE
        # stops, not with a traceback; stdout goes to /dev/null so the exit's flush is silent too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return BROKEN_PIPE_EXIT
    finally:
        if program and command in SHORT_COMMANDS:
            # The process ends next. Frozen objects are never collected, which would keep the
            # garbage of a process that goes on (a caller of main in process): programs only.
            import gc

            gc.freeze()


if __name__ == "__main__":
    sys.exit(main())
