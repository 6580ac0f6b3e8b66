"""Every option that names a file or folder to write is checked when the command line is read,
by one rule (issue 18): missing folders on the way are made when the output is written; a file
where a folder should be or a folder where a file should be is one ``error:`` line (no usage
block) and exit status 2, not a FileNotFoundError/FileExistsError traceback later."""

import re

import pytest

from looking_glass.cli.common import OutputPathError, output_file, output_folder
from looking_glass.cli.main import main


@pytest.fixture
def paths(tmp_path):
    existing = tmp_path / "README.md"
    existing.write_text("a file")
    return {"file": str(existing), "missing": str(tmp_path / "nowhere" / "x.png"), "dir": str(tmp_path),
            "below_file": str(existing / "x")}


@pytest.mark.parametrize(("argv", "kind", "message"), [
    (["plot", "--synthetic", "1", "--out", "{below_file}"], "below_file", "README.md is a file, not a folder"),
    (["plot", "--synthetic", "1", "--out", "{dir}"], "dir", "is a folder, not a file"),
    (["map", "JOB", "--out", "{file}"], "file", "README.md: it exists and is not a folder"),
    (["map", "JOB", "--out", "{below_file}"], "below_file", "README.md is a file, not a folder"),
    (["results", "JOB", "--out", "{below_file}"], "below_file", "README.md is a file, not a folder"),
    (["results", "JOB", "--out", "{dir}"], "dir", "is a folder, not a file"),
    (["export", "JOB", "--out", "{dir}"], "dir", "is a folder, not a file"),
    (["export", "JOB", "--out", "{below_file}"], "below_file", "is a file, not a folder"),
    (["demo", "--out", "{file}"], "file", "exists and is not a folder"),
    (["prepare", "--images", "a.tif", "--footprints", "b.geojson", "--out", "{file}"], "file", "exists and is not a folder"),
    (["synth-data", "--out", "{below_file}"], "below_file", "is a file, not a folder"),
    (["up", "--embedded", "{below_file}"], "below_file", "is a file, not a folder"),
    (["up", "--dir", "{file}"], "file", "exists and is not a folder"),
    (["train", "--local", "--root", "{file}"], "file", "exists and is not a folder"),
])
def test_unusable_output_paths_exit_2_with_one_line(paths, capsys, argv, kind, message):
    argv = [a.format(**paths) for a in argv]
    with pytest.raises(SystemExit) as err:
        main(argv)
    assert err.value.code == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot write ") and paths[kind] in lines[0], lines  # no usage block
    assert re.search(message, lines[0]), lines[0]


def test_usable_output_paths_pass_unchanged(tmp_path):
    """Missing folders on the way are fine for files and folders alike (made when written:
    one rule for every command, issue 18)."""
    assert output_file(str(tmp_path / "new.png")) == str(tmp_path / "new.png")
    assert output_folder(str(tmp_path / "a" / "b")) == str(tmp_path / "a" / "b")  # made later, parents too
    assert output_file(str(tmp_path / "a" / "b" / "x.csv")) == str(tmp_path / "a" / "b" / "x.csv")
    assert not (tmp_path / "a").exists()  # nothing made while the command line is read
    with pytest.raises(OutputPathError, match="is a folder, not a file"):
        output_file(str(tmp_path))
