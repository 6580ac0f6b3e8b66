"""Output files written atomically with the permissions of any new file.

Every file a command writes for the user (exports, results tables, map pages, figures) goes
through :func:`atomic_output`: written under a hidden temporary name beside the target and renamed
over it at the end, so an error or Ctrl-C leaves no partial file and an existing target untouched.
Missing folders on the way to the target are made. The temporary file is created with mode 0666 and the process's umask applied by the kernel (as
``open(path, "w")`` makes a file), not with ``tempfile.mkstemp``'s private 0600: a GeoJSON export
and a GeoPackage export of the same job get the same permissions (0644 under the usual umask 022).
Files that must stay private (the embedded run's state file) do not use this module.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_output", "write_atomic"]

_TRIES = 100  # random names tried before giving up (a collision of 8 hex digits is already rare)


def _new_temporary(target: Path) -> Path:
    """A new, empty file beside ``target`` (``.NAME.RANDOM.SUFFIX``: hidden, same suffix, so
    writers that choose a driver by the suffix choose the right one), mode 0666 & ~umask.
    Raises OSError where the folder is not writable."""
    for _ in range(_TRIES):
        tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}{target.suffix or '.tmp'}")
        try:  # O_EXCL: never opens a file another process (or a symlink planted there) already holds
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp
    raise FileExistsError(f"no free temporary name beside {target} after {_TRIES} tries")


@contextlib.contextmanager
def atomic_output(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``target`` to write the whole output to; when the block ends
    without an exception the file replaces ``target`` (``os.replace``: atomic on one file
    system), else it is removed and ``target`` is left as it was. The temporary file exists
    (empty) when yielded; a writer may also delete and recreate it (GDAL does). Its mode, and so
    the target's, is that of a new file: 0666 less the umask. Raises OSError where the folder is
    not writable, or a file stands where a folder on its way should be. Missing folders on its way
    are made first (every command's output files, one rule: ``results --out new/x.csv`` as
    ``map --out new/dir``)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _new_temporary(target)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def write_atomic(target: str | os.PathLike, data: str | bytes, encoding: str = "utf-8") -> None:
    """Write ``data`` (text in ``encoding``, or bytes) to ``target`` with :func:`atomic_output`."""
    with atomic_output(target) as tmp:
        if isinstance(data, bytes):
            tmp.write_bytes(data)
        else:
            tmp.write_text(data, encoding=encoding)
