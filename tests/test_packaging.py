"""Packaging metadata that pip and setuptools read without deprecation warnings, and the package
data the map needs (Leaflet) declared and present."""

from __future__ import annotations

import tomllib

from conftest import REPO_ROOT
from packaging.licenses import canonicalize_license_expression
from packaging.requirements import Requirement
from packaging.version import Version

PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())


def test_license_is_an_spdx_expression():
    # A TOML table (`{ text = ... }`) makes setuptools >= 77 warn on every install.
    license_ = PYPROJECT["project"]["license"]
    assert isinstance(license_, str)
    assert canonicalize_license_expression(license_) == license_


def test_the_build_backend_accepts_spdx_license_strings():
    requirements = {Requirement(r).name: Requirement(r) for r in PYPROJECT["build-system"]["requires"]}
    setuptools = requirements["setuptools"].specifier
    assert not setuptools.contains(Version("76.1")), "setuptools < 77 refuses `license` as a string"
    assert setuptools.contains(Version("77.0.3")) and setuptools.contains(Version("80.9"))


def test_leaflet_ships_as_package_data():
    declared = PYPROJECT["tool"]["setuptools"]["package-data"]["looking_glass"]
    static = REPO_ROOT / "looking_glass"
    for pattern in ("results/static/leaflet/*", "results/static/leaflet/images/*"):
        assert pattern in declared
        assert list(static.glob(pattern)), f"nothing in looking_glass/{pattern}"
    assert (static / "results/static/leaflet/leaflet.js").is_file()
