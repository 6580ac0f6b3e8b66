"""Where ``prepare``'s inputs come from: files, globs, S3 objects and prefixes, and image/label pairs.

Rules
-----
* **Expansion** (:func:`expand_inputs`). A local path is one file. A local pattern with ``*``, ``?``
  or ``[`` is a glob (``**`` recurses), sorted. ``s3://bucket/key`` is one object;
  ``s3://bucket/prefix/`` (ending in ``/``) is every object under the prefix with the kind's
  extensions (images ``.tif``/``.tiff``, footprints ``.geojson``/``.json``); an S3 key with
  ``*``/``?``/``[`` is matched with :mod:`fnmatch` against every key under the part before the first
  wildcard. A pattern or prefix matching nothing, a missing bucket or an unreachable endpoint is
  one :class:`PrepareError` naming it. The same file named twice is kept once.
* **Pairing** (:func:`pair_inputs`). One image: every label file labels it. One label file (e.g. an
  OSM extract): it labels every image. Several of both: each image is paired with one label file
  by **id**: the label file of the same stem, else the one that shares the most id words with
  it (a tie is no match). Id words are the words of a stem (split at ``_``, ``-``, ``.``; case
  ignored) that not every file of its kind has. SpaceNet 2: ``..._PS-RGB_img1.tif`` pairs with
  ``..._geojson_buildings_img1.geojson`` by ``img1``, not with ``..._img10.geojson``; SpaceNet 4:
  the 27 looks at one tile, ``Pan-Sharpen_Atlanta_nadir7_catid_..._732701_3720689.tif``, all pair
  with ``spacenet-buildings_732701_3720689.geojson``. Several images may share a label file;
  every image must find its label file and every label file an image: the unpaired are listed
  in one error.
* **Reading.** Images are read in place: local files by path, S3 objects through GDAL's
  ``/vsis3/`` (range requests: only the blocks a chip needs travel) with the boto3 session's
  credentials, region and endpoint (:func:`looking_glass.imagery.geotiff.gdal_s3_env`, so the
  embedded moto endpoint works too). Label files are small and downloaded (:func:`localize`).
"""

from __future__ import annotations

import contextlib
import fnmatch
import glob
import re
import uuid
from pathlib import Path, PurePosixPath
from typing import Iterator, Sequence

from looking_glass.datasets.errors import PrepareError
from looking_glass.errors import EXIT_FAILURE

__all__ = [
    "FOOTPRINT_SUFFIXES",
    "IMAGE_SUFFIXES",
    "expand_inputs",
    "file_id",
    "image_env",
    "localize",
    "pair_inputs",
    "raster_path",
]

IMAGE_SUFFIXES = (".tif", ".tiff")
FOOTPRINT_SUFFIXES = (".geojson", ".json")
_WILDCARDS = "*?["


def _split_s3(uri: str) -> tuple[str, str]:
    bucket, _, key = uri[5:].partition("/")
    if not bucket:
        raise PrepareError(f"{uri}: not an s3://bucket/key address")
    return bucket, key


def _s3_error(uri: str, exc: Exception) -> PrepareError:
    from botocore.exceptions import ClientError

    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in ("NoSuchBucket", "404", "NotFound"):
            return PrepareError(f"{uri}: no such S3 bucket")
        return PrepareError(f"{uri}: cannot list the S3 prefix ({code or exc})")
    return PrepareError(f"{uri}: cannot reach S3 ({type(exc).__name__}: {exc})")


def _list_s3(uri: str, suffixes: Sequence[str]) -> list[str]:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, key = _split_s3(uri)
    wild = next((i for i, ch in enumerate(key) if ch in _WILDCARDS), None)
    prefix = key if wild is None else key[:wild]
    found = []
    try:
        pages = boto3.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for page in pages:
            for obj in page.get("Contents", []):
                k = obj["Key"]
                if k.endswith("/"):
                    continue
                if wild is None and not k.lower().endswith(tuple(suffixes)):
                    continue
                if wild is not None and not fnmatch.fnmatchcase(k, key):
                    continue
                found.append(f"s3://{bucket}/{k}")
    except (BotoCoreError, ClientError) as exc:
        raise _s3_error(uri, exc) from None
    if not found:
        what = f"no object matches {key!r}" if wild is not None else f"no {'/'.join(suffixes)} object under the prefix"
        raise PrepareError(f"{uri}: {what}")
    return sorted(found)


def expand_inputs(patterns: Sequence[str], kind: str) -> list[str]:
    """The files and S3 objects that ``patterns`` name (see the module's expansion rule), in order,
    each once; ``kind`` is ``"images"`` or ``"footprints"`` (extensions of S3 prefixes, messages).

    Raises :class:`PrepareError` for a pattern or prefix matching nothing, a directory, or an S3
    bucket that is missing or cannot be reached."""
    suffixes = IMAGE_SUFFIXES if kind == "images" else FOOTPRINT_SUFFIXES
    out: list[str] = []
    for pattern in (str(p) for p in patterns):
        if pattern.startswith("s3://"):
            _, key = _split_s3(pattern)
            if not key or key.endswith("/") or any(ch in key for ch in _WILDCARDS):
                out += _list_s3(pattern, suffixes)
            else:
                out.append(pattern)
        elif any(ch in pattern for ch in _WILDCARDS):
            found = sorted(p for p in glob.glob(pattern, recursive=True) if Path(p).is_file())
            if not found:
                raise PrepareError(f"{pattern}: no {kind} files match")
            out += found
        elif Path(pattern).is_dir():
            raise PrepareError(f"{pattern}: is a directory; name its files with a glob, e.g. {pattern.rstrip('/')}/*{suffixes[0]}")
        else:
            out.append(pattern)
    return list(dict.fromkeys(out))


def file_id(path: str) -> str:
    """The file stem of a path or s3:// address (``a/b/img_1.tif`` -> ``img_1``)."""
    return PurePosixPath(path.rstrip("/")).stem


def _id_words(paths: Sequence[str]) -> dict[str, set[str]]:
    """Each path's id words: the words of its stem (split at ``_``, ``-``, ``.``; lower case)
    that not every one of ``paths`` has (a shared product name or city says nothing)."""
    words = {p: set(w for w in re.split(r"[_\-.]+", file_id(p).lower()) if w) for p in paths}
    common = set.intersection(*words.values()) if len(words) > 1 else set()
    return {p: w - common for p, w in words.items()}


def _best_matches(images: Sequence[str], footprints: Sequence[str], iw: dict, fw: dict) -> dict[str, str]:
    """Image -> the label file sharing the most id words with it (``iw``/``fw``: the id words of
    all images and all label files, :func:`_id_words`), for images with one such file."""
    out = {}
    for img in images:
        row = sorted(((len(iw[img] & fw[f]), f) for f in footprints), reverse=True)
        if row and row[0][0] > 0 and (len(row) == 1 or row[1][0] < row[0][0]):
            out[img] = row[0][1]
    return out


def pair_inputs(images: Sequence[str], footprints: Sequence[str]) -> list[tuple[str, tuple[str, ...]]]:
    """(image, its label files) for each image, by the module's pairing rule; raises
    :class:`PrepareError` listing every image without a label file and every label file without
    an image when files are paired by id."""
    if len(images) == 1 or len(footprints) == 1:
        return [(img, tuple(footprints)) for img in images]
    by_stem = {file_id(fp): fp for fp in footprints}
    pairs: dict[str, str] = {img: by_stem[file_id(img)] for img in images if file_id(img) in by_stem}
    left = [i for i in images if i not in pairs]
    pairs.update(_best_matches(left, footprints, _id_words(images), _id_words(footprints)))
    used = set(pairs.values())
    problems = [f"{img}: no label file with its id" for img in images if img not in pairs]
    problems += [f"{fp}: a label file without its image" for fp in footprints if fp not in used]
    if problems:
        shown = problems[:20] + ([f"... and {len(problems) - 20} more"] if len(problems) > 20 else [])
        raise PrepareError(
            f"{len(problems)} file(s) could not be paired by id (an image pairs with the label file of "
            "the same stem, else with the one sharing the most words of their names, ignoring words all share):\n  "
            + "\n  ".join(shown)
        )
    return [(img, (pairs[img],)) for img in images]


def localize(path: str, tmpdir: Path) -> Path:
    """A local file for ``path``: s3://bucket/key objects are downloaded into tmpdir (boto3,
    which honours ``AWS_ENDPOINT_URL``); raises PrepareError for a missing file or object."""
    path = str(path)
    if path.startswith("s3://"):
        bucket, key = _split_s3(path)
        if not key or key.endswith("/"):
            raise PrepareError(f"{path}: not an s3://bucket/key object address")
        import boto3
        from botocore.exceptions import BotoCoreError, ClientError

        local = tmpdir / uuid.uuid4().hex[:8] / Path(key).name
        local.parent.mkdir(parents=True)
        try:
            boto3.client("s3").download_file(bucket, key, str(local))
        except ClientError as e:
            code = str(e.response.get("Error", {}).get("Code", ""))
            if code in ("404", "NoSuchKey", "NoSuchBucket", "NotFound"):
                raise PrepareError(f"{path}: no such S3 object") from e
            raise PrepareError(f"{path}: could not download: {e}", exit_code=EXIT_FAILURE) from e
        except BotoCoreError as e:
            raise PrepareError(f"{path}: could not download: {e}", exit_code=EXIT_FAILURE) from e
        return local
    local = Path(path)
    if not local.exists():
        raise PrepareError(f"{path}: no such file")
    if not local.is_file():
        raise PrepareError(f"{path}: not a file")
    return local


def raster_path(path: str) -> str:
    """What GDAL opens for ``path``: ``/vsis3/bucket/key`` for an S3 object, else the path.
    Raises :class:`PrepareError` for a missing local file or S3 object."""
    if not path.startswith("s3://"):
        localize(path, Path("."))  # existence check only: local paths are not copied
        return path
    import boto3

    from looking_glass.imagery.geotiff import GeoTiffError, check_s3_object

    bucket, key = _split_s3(path)
    if not key or key.endswith("/"):
        raise PrepareError(f"{path}: not an s3://bucket/key object address")
    try:
        check_s3_object(boto3.session.Session(), path)
    except GeoTiffError as e:
        raise PrepareError(str(e)) from None
    return f"/vsis3/{bucket}/{key}"


@contextlib.contextmanager
def image_env(path: str) -> Iterator[None]:
    """The GDAL environment to open and read ``path`` in: the capped block cache of every imagery
    read, plus the boto3 session's S3 credentials and endpoint for ``s3://`` inputs."""
    import rasterio

    from looking_glass.imagery.raster import READ_OPTIONS

    if not path.startswith("s3://"):
        with rasterio.Env(**READ_OPTIONS):
            yield
        return
    import boto3

    from looking_glass.imagery.geotiff import gdal_s3_env

    with gdal_s3_env(boto3.session.Session()):
        yield
