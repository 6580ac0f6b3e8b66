"""The ``looking-glass`` command line."""

from __future__ import annotations

import argparse
import os
import sys

from looking_glass.cli import data, demo, jobs, models, outlines, serve, tiles, training
from looking_glass.cli.quiet import quiet_start_up
from looking_glass.errors import LookingGlassError

BROKEN_PIPE_EXIT = 141  # 128 + SIGPIPE: what a shell reports for a reader that stopped early


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command; each command module adds its own subcommands."""
    parser = argparse.ArgumentParser(prog="looking-glass", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="show the libraries' start-up messages (TensorFlow, absl, oneDNN), hidden by default")
    sub = parser.add_subparsers(dest="command", required=True)
    demo.add_commands(sub)
    tiles.add_commands(sub)
    data.add_commands(sub)
    training.add_commands(sub)
    tiles.add_validate(sub)
    serve.add_commands(sub)
    jobs.add_commands(sub)
    outlines.add_commands(sub)
    models.add_commands(sub)
    return parser


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
    args = build_parser().parse_args(argv)
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


if __name__ == "__main__":
    sys.exit(main())
