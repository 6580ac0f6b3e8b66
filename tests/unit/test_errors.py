"""The one error base class: a message for the user and an exit code for the command line."""

import pytest

from looking_glass.errors import LookingGlassError


class Refused(LookingGlassError, ValueError):
    """A domain error that keeps its older base class."""


class Usage(LookingGlassError):
    exit_code = 2


def test_message_and_default_exit_code():
    err = LookingGlassError("AOI file x.geojson not found")
    assert str(err) == err.message == "AOI file x.geojson not found"
    assert err.exit_code == 1


def test_subclasses_keep_their_old_bases_and_may_set_exit_codes():
    with pytest.raises(ValueError) as caught:
        raise Refused("bad")
    assert isinstance(caught.value, LookingGlassError) and caught.value.exit_code == 1
    assert Usage("x").exit_code == 2
    assert Usage("x", exit_code=3).exit_code == 3
    assert Usage.exit_code == 2  # one raise's code does not change the class's


def test_the_domain_errors_share_the_base():
    from looking_glass.runtime.parsing import ParseError
    from looking_glass.runtime.settings import SettingsError

    assert issubclass(SettingsError, ParseError) and issubclass(SettingsError, ValueError)
    assert issubclass(SettingsError, LookingGlassError)
