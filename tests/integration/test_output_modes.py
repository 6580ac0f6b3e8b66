"""Every file the job commands write gets the permissions of a new file (0666 less the umask),
written atomically: results tables, map pages and images (exports: test_export_buildings.py)."""

from __future__ import annotations

import os
import stat

import pytest
from conftest import run_cli
from test_results_cli import FULL, add_job
from test_results_cli import env as env  # noqa: F401 - the fixture


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    yield 0o640
    os.umask(old)


def test_results_and_map_outputs_get_the_mode_of_a_new_file(env, capsys, umask_027):
    job = add_job(env, FULL, name="kigali")
    out = env["tmp"] / "out"
    out.mkdir()
    for fmt in ("csv", "geojson", "table"):
        target = out / f"r.{fmt}"
        target.write_text("older")
        os.chmod(target, 0o600)
        code, _, err = run_cli(capsys, "results", job, "--format", fmt, "--out", str(target))
        assert code == 0, err
        assert target.read_text() != "older"
    code, _, err = run_cli(capsys, "map", job, "--out", str(out / "map"))
    assert code == 0, err
    files = [p for p in out.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"r.csv", "r.geojson", "r.table", "map.html", "map.png"}
    assert not [p.name for p in files if p.name.startswith(".")]  # no temporary file left
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in files} == {p.name: umask_027 for p in files}
