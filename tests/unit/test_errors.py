"""The one error base class: a message for the user and an exit code for the command line."""

import pytest

from looking_glass.errors import EXIT_BAD_INPUT, EXIT_FAILURE, LookingGlassError


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


# Each domain error, its older base, and its exit code by the one rule (looking_glass.errors,
# docs/cli.md#exit-codes): 2 for input the user gave that cannot be used, 1 for a failure at run time.
DOMAIN_ERRORS = [
    ("looking_glass.tiling.aoi", "AoiError", ValueError, 2),
    ("looking_glass.pipeline.jobs", "JobError", RuntimeError, 1),
    ("looking_glass.pipeline.jobref", "JobRefError", ValueError, 2),
    ("looking_glass.pipeline.unit_results", "TileResultError", Exception, 1),
    ("looking_glass.datasets.errors", "PrepareError", ValueError, 2),
    ("looking_glass.results.query", "ResultsError", ValueError, 2),
    ("looking_glass.results.buildings", "ExportError", ValueError, 2),
    ("looking_glass.results.masks", "MaskError", ValueError, 1),
    ("looking_glass.results.webmap", "MapError", RuntimeError, 1),
    ("looking_glass.results.basemap", "BasemapError", RuntimeError, 1),
    ("looking_glass.results.truth", "TruthError", ValueError, 2),
    ("looking_glass.imagery.raster", "RasterError", ValueError, 2),
    ("looking_glass.imagery.geotiff", "GeoTiffError", ValueError, 2),
    ("looking_glass.imagery.secret", "ImagerySecretError", RuntimeError, 1),
    ("looking_glass.imagery.xyz", "ImagerySourceError", RuntimeError, 1),
    ("looking_glass.local.demo", "DemoError", RuntimeError, 1),
    ("looking_glass.local.deployment", "DeploymentError", RuntimeError, 1),
    ("looking_glass.local.inputs", "InputError", ValueError, 2),
    ("looking_glass.model.fetch", "ModelFetchError", RuntimeError, 1),
    ("looking_glass.model.registry", "RegistryError", ValueError, 2),
    ("looking_glass.outlines.errors", "OutlinesError", ValueError, 2),
    ("looking_glass.runtime.parsing", "ParseError", ValueError, 2),
    ("looking_glass.runtime.settings", "SettingsError", ValueError, 2),
    ("looking_glass.training.errors", "HyperparameterError", ValueError, 2),
    ("looking_glass.training.errors", "TrainingError", RuntimeError, 1),
    ("looking_glass.cli.common", "CommandError", Exception, 2),
]


@pytest.mark.parametrize(("module", "name", "old_base", "exit_code"), DOMAIN_ERRORS, ids=[e[1] for e in DOMAIN_ERRORS])
def test_every_domain_error_is_a_looking_glass_error_with_its_old_base_and_exit_code(module, name, old_base, exit_code):
    import importlib

    cls = getattr(importlib.import_module(module), name)
    assert issubclass(cls, LookingGlassError) and issubclass(cls, old_base)
    assert cls.exit_code == exit_code == (EXIT_BAD_INPUT if exit_code == 2 else EXIT_FAILURE)
