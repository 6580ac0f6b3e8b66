"""The one base class of Looking Glass's own errors.

Every error the project raises on purpose, because an input, a setting or a deployment cannot
be used (an AOI that is not closed, a bad environment variable, a job id that matches nothing),
derives from :class:`LookingGlassError`. Its message is written for the user; its exit code is
what the ``looking-glass`` command exits with, so the command line catches this one class at
the top instead of converting each error by hand. Subclasses keep their older bases as well
(``ValueError``, ``RuntimeError``) so code that catches those still does.

Exit codes, one rule (docs/cli.md#exit-codes):

- :data:`EXIT_BAD_INPUT` (2, argparse's status for a bad argument too): what the user gave the
  command cannot be used: an argument or option, a file or folder it names (missing, unreadable,
  or not what it should be: an AOI, polygons, imagery, a model, truth, a dataset), a job or
  source name that matches nothing, a setting in the environment (``LG_...``). Error classes
  about such input set it as their ``exit_code``.
- :data:`EXIT_FAILURE` (1): the input was fine and something failed while the command ran: AWS
  refused or could not be reached, no deployment is running, a job failed or timed out, a stored
  result is missing or damaged. The default; a raise of an input class for such a failure
  passes ``exit_code=EXIT_FAILURE``.
"""

from __future__ import annotations

__all__ = ["EXIT_BAD_INPUT", "EXIT_FAILURE", "LookingGlassError"]

EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2


class LookingGlassError(Exception):
    """An error meant for the user: ``message`` says what is wrong (and, where it can, what to do),
    ``exit_code`` is the command line's exit status for it.

    ``str(error)`` is the message. A subclass sets its usual exit code as the class attribute
    ``exit_code``; one raise can override it with the ``exit_code`` argument.
    """

    exit_code: int = EXIT_FAILURE

    def __init__(self, message: str = "", exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code

    @property
    def message(self) -> str:
        """The text for the user (the same as ``str(error)``)."""
        return str(self)
