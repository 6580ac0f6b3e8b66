"""looking_glass.runtime.atomic: outputs replace their target whole or not at all, with the
permissions of a new file (0666 less the umask), never mkstemp's private 0600."""

from __future__ import annotations

import os
import stat

import pytest

from looking_glass.runtime.atomic import atomic_output, write_atomic


@pytest.fixture(params=[0o022, 0o027, 0o002])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_new_output_gets_the_mode_of_a_new_file(tmp_path, umask):
    plain = tmp_path / "plain.txt"
    plain.write_text("x")  # what open(path, "w") makes under this umask
    write_atomic(tmp_path / "a.geojson", "{}")
    write_atomic(tmp_path / "b.bin", b"\x00")
    assert _mode(tmp_path / "a.geojson") == _mode(tmp_path / "b.bin") == _mode(plain) == 0o666 & ~umask
    assert (tmp_path / "a.geojson").read_text() == "{}" and (tmp_path / "b.bin").read_bytes() == b"\x00"


def test_a_writer_that_recreates_the_file_and_a_replaced_target_get_it_too(tmp_path, umask):
    target = tmp_path / "out.gpkg"
    target.write_text("old")
    os.chmod(target, 0o600)
    with atomic_output(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".out.gpkg.") and tmp.suffix == ".gpkg"
        assert tmp.exists() and _mode(tmp) == 0o666 & ~umask
        tmp.unlink()  # as GDAL does before it creates its file
        tmp.write_text("new")
    assert target.read_text() == "new" and _mode(target) == 0o666 & ~umask
    assert [p.name for p in tmp_path.iterdir()] == ["out.gpkg"]


def test_an_error_leaves_the_old_target_and_no_temporary_file(tmp_path):
    target = tmp_path / "results.csv"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_output(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["results.csv"]


def test_a_taken_temporary_name_is_skipped(tmp_path, monkeypatch):
    names = iter(["aaaa", "aaaa", "bbbb"])
    monkeypatch.setattr("looking_glass.runtime.atomic.secrets.token_hex", lambda n: next(names))
    write_atomic(tmp_path / "a.txt", "one")  # takes .a.txt.aaaa.txt, renamed away
    (tmp_path / ".a.txt.aaaa.txt").write_text("someone else's")
    write_atomic(tmp_path / "a.txt", "two")  # aaaa is taken: bbbb
    assert (tmp_path / "a.txt").read_text() == "two"
    assert (tmp_path / ".a.txt.aaaa.txt").read_text() == "someone else's"


def test_missing_folders_on_the_way_are_made(tmp_path):
    """Every command's output files go through here: `results --out new/x.csv` makes `new` as
    `map --out new/dir` does (issue 18); a file where a folder should be is still an OSError."""
    target = tmp_path / "demo-output" / "deeper" / "atlanta.csv"
    write_atomic(target, "a,b\n")
    assert target.read_text() == "a,b\n" and sorted(p.name for p in target.parent.iterdir()) == ["atlanta.csv"]
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OSError):
        write_atomic(blocker / "x.csv", "a\n")
