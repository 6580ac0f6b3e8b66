"""The command line's shape: one module per command group, one error handler, public imports only."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import looking_glass.cli
from looking_glass.cli.main import build_parser, command_of, exit_for, main
from looking_glass.errors import LookingGlassError

CLI_DIR = Path(looking_glass.cli.__file__).parent
COMMANDS = [
    "demo", "cover", "estimate", "prepare", "synth-data", "train", "evaluate", "plot", "validate",
    "serve-synthetic", "serve-tiles", "aoi", "up", "submit", "jobs", "status", "results", "retry", "map", "export", "models",
]


def _commands(parser):
    return next(a for a in parser._actions if a.dest == "command").choices


def test_every_command_in_its_usual_order():
    assert list(_commands(build_parser())) == COMMANDS


@pytest.mark.parametrize("command", COMMANDS)
def test_a_command_parses_as_in_the_whole_parser_with_only_its_module(command):
    # main builds the parser of the command it runs only (COMMAND_GROUPS); its usage, help and
    # the top-level usage must be the whole parser's, and a module adding a command the table
    # does not list under it would clash with the placeholder (argparse refuses the duplicate).
    full, lazy = build_parser(), build_parser(command)
    assert list(_commands(lazy)) == COMMANDS
    assert lazy.format_usage() == full.format_usage()
    assert _commands(lazy)[command].format_help() == _commands(full)[command].format_help()


@pytest.mark.parametrize(("argv", "command"), [
    (["cover", "aoi.geojson"], "cover"), (["-v", "evaluate", "--synthetic", "2"], "evaluate"),
    (["--verbose", "models", "use", "v2"], "models"), (["--help"], None), (["-v", "--help", "cover"], None),
    (["covr", "aoi.geojson"], None), ([], None), (["-v"], None),
])
def test_the_command_is_the_first_word_after_verbose(argv, command):
    assert command_of(argv) == command


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


def test_a_domain_error_becomes_one_line_and_status_2_for_a_bad_aoi(tmp_path):
    bad = tmp_path / "open.geojson"
    bad.write_text('{"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1]]]}')
    proc = subprocess.run([sys.executable, "-m", "looking_glass.cli.main", "cover", str(bad)],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"error: {bad}: ") and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


# The exit-code rule (docs/cli.md#exit-codes): 2 for any input the user gave that cannot be used,
# whether argparse or the command finds it; 1 for a failure while the command runs.
BAD_INPUTS = {
    "an option out of range": (["cover", "AOI", "--zoom", "40"], "zoom 40 is outside 0..24"),
    "a missing AOI file": (["cover", "MISSING"], "not found"),
    "an AOI that is not closed": (["validate", "OPEN"], "not closed"),
    "a missing image": (["aoi", "MISSING.tif"], "no such file"),
    "a missing polygons file": (["results", "job", "--compare", "AOI", "--within", "MISSING"], "not found"),
    "a setting in the environment that the command refuses": (["up", "--embedded", "STATE"], "LG_TILE_URL_TEMPLATE set in this shell"),
    "a bad setting the enumerator would refuse too": (["validate", "AOI"], "LG_MAX_TILES_PER_JOB='many'"),
}


@pytest.mark.parametrize("case", BAD_INPUTS, ids=list(BAD_INPUTS))
def test_every_bad_input_exits_2_with_one_line(case, tmp_path, capsys, monkeypatch):
    from conftest import SAMPLE_POLYGON, run_cli

    (tmp_path / "aoi.geojson").write_text(json.dumps(SAMPLE_POLYGON))
    (tmp_path / "open.geojson").write_text('{"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1]]]}')
    paths = {"AOI": "aoi.geojson", "OPEN": "open.geojson", "MISSING": "missing.geojson", "MISSING.tif": "missing.tif",
             "STATE": "state.json"}
    argv, message = BAD_INPUTS[case]
    monkeypatch.setenv("LG_TILE_URL_TEMPLATE", "https://example.invalid/{z}/{x}/{y}.png")  # refused by `up` only
    monkeypatch.setenv("LG_MAX_TILES_PER_JOB", "many")  # read by validate (and submit) only
    code, out, err = run_cli(capsys, *[str(tmp_path / paths[a]) if a in paths else a for a in argv])
    assert code == 2, err
    assert message in err and err.count("error:") == 1 and "Traceback" not in err and out == ""


def test_run_time_failures_exit_1(tmp_path, capsys):
    from conftest import run_cli

    # No deployment running at the state file: nothing wrong with what was typed.
    code, _, err = run_cli(capsys, "jobs", "--embedded", str(tmp_path / "none.json"))
    assert code == 1 and err.startswith("error: ") and "looking-glass up" in err


def test_aws_failures_are_run_time_failures_even_from_command_errors():
    from botocore.exceptions import EndpointConnectionError

    from looking_glass.cli.common import CommandError, aws_guard

    @aws_guard
    def command(args):
        raise EndpointConnectionError(endpoint_url="http://127.0.0.1:9")

    with pytest.raises(CommandError, match="cannot reach AWS") as caught:
        command(None)
    assert caught.value.exit_code == 1 and CommandError("a missing file").exit_code == 2


def test_command_and_deployment_errors_end_the_same_way(tmp_path):
    with pytest.raises(SystemExit, match=r"^error: AOI file .*missing\.geojson not found$"):
        main(["cover", str(tmp_path / "missing.geojson")])
    with pytest.raises(SystemExit, match=r"^error: ") as err:  # no embedded run: DeploymentError
        main(["jobs", "--embedded", str(tmp_path / "none.json")])
    assert "Traceback" not in str(err.value)
