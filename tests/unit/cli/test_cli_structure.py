"""The command line's shape: one module per command group, one error handler, public imports only."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import looking_glass.cli
from looking_glass.cli.main import build_parser, exit_for, main
from looking_glass.errors import LookingGlassError

CLI_DIR = Path(looking_glass.cli.__file__).parent
COMMANDS = [
    "demo", "cover", "estimate", "prepare", "synth-data", "train", "evaluate", "plot", "validate",
    "serve-synthetic", "serve-tiles", "aoi", "up", "submit", "jobs", "status", "results", "retry", "map", "export", "models",
]


def test_every_command_in_its_usual_order():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert list(sub.choices) == COMMANDS


@pytest.mark.parametrize("path", sorted(CLI_DIR.glob("*.py")), ids=lambda p: p.name)
def test_cli_modules_are_small_and_import_nothing_private(path):
    source = path.read_text()
    assert len(source.splitlines()) < 500
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("looking_glass"):
            private = [a.name for a in node.names if a.name.startswith("_")]
            assert not private, f"{path.name} imports {private} from {node.module}"


class Refused(LookingGlassError):
    """A stand-in domain error."""


class BadInput(LookingGlassError):
    exit_code = 2


def test_exit_for_keeps_status_1_messages_in_the_exit(capsys):
    exc = exit_for(Refused("the AOI is not closed"))
    assert exc.code == "error: the AOI is not closed"
    assert capsys.readouterr().err == ""


def test_exit_for_other_statuses_print_the_message(capsys):
    exc = exit_for(BadInput("--imagery x.tif: no such file"))
    assert exc.code == 2 and str(exc) == "error: --imagery x.tif: no such file"
    assert capsys.readouterr().err == "error: --imagery x.tif: no such file\n"


def test_a_domain_error_becomes_one_line_and_status_1(tmp_path):
    bad = tmp_path / "open.geojson"
    bad.write_text('{"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1]]]}')
    proc = subprocess.run([sys.executable, "-m", "looking_glass.cli.main", "cover", str(bad)],
                          capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"error: {bad}: ") and "Traceback" not in proc.stderr


def test_command_and_deployment_errors_end_the_same_way(tmp_path):
    with pytest.raises(SystemExit, match=r"^error: AOI file .*missing\.geojson not found$"):
        main(["cover", str(tmp_path / "missing.geojson")])
    with pytest.raises(SystemExit, match=r"^error: ") as err:  # no embedded run: DeploymentError
        main(["jobs", "--embedded", str(tmp_path / "none.json")])
    assert "Traceback" not in str(err.value)
