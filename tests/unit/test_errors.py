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


DOMAIN_ERRORS = [
    ("looking_glass.tiling.aoi", "AoiError", ValueError),
    ("looking_glass.pipeline.jobs", "JobError", RuntimeError),
    ("looking_glass.datasets.errors", "PrepareError", ValueError),
    ("looking_glass.results.query", "ResultsError", ValueError),
    ("looking_glass.results.webmap", "MapError", RuntimeError),
    ("looking_glass.results.truth", "TruthError", ValueError),
    ("looking_glass.imagery.raster", "RasterError", ValueError),
    ("looking_glass.imagery.geotiff", "GeoTiffError", ValueError),
    ("looking_glass.imagery.secret", "ImagerySecretError", RuntimeError),
    ("looking_glass.imagery.xyz", "ImagerySourceError", RuntimeError),
    ("looking_glass.local.demo", "DemoError", RuntimeError),
    ("looking_glass.local.deployment", "DeploymentError", RuntimeError),
    ("looking_glass.local.inputs", "InputError", ValueError),
    ("looking_glass.model.fetch", "ModelFetchError", RuntimeError),
    ("looking_glass.outlines.errors", "OutlinesError", ValueError),
    ("looking_glass.runtime.settings", "SettingsError", ValueError),
    ("looking_glass.training.errors", "HyperparameterError", ValueError),
    ("looking_glass.training.errors", "TrainingError", RuntimeError),
    ("looking_glass.cli.common", "CommandError", Exception),
]


@pytest.mark.parametrize(("module", "name", "old_base"), DOMAIN_ERRORS, ids=[n for _, n, _ in DOMAIN_ERRORS])
def test_every_domain_error_is_a_looking_glass_error_and_keeps_its_old_base(module, name, old_base):
    import importlib

    cls = getattr(importlib.import_module(module), name)
    assert issubclass(cls, LookingGlassError) and issubclass(cls, old_base)
