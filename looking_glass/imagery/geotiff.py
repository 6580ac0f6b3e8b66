"""A GeoTIFF or Cloud-Optimized GeoTIFF as an imagery source: web-mercator 256 px tiles.

The worker's second imagery source (``LG_IMAGERY_GEOTIFF``), and what ``looking-glass
serve-tiles`` serves. Tiles are read with rio-tiler (reprojected to web mercator, bilinear, as
``looking-glass prepare --mode tiles`` does, so inference sees what training saw). The radiometry
and nodata rules are the ones prepare uses too (:mod:`looking_glass.imagery.raster`): bands chosen
the same way (1 band becomes grey RGB; 3 bands are R, G, B; others must be named), uint8 passes
through, anything else gets the per-image percentile stretch (computed once when the image is
opened; a mosaic's images share the mosaic's one stretch), and a pixel is nodata where the
dataset mask says so or all its bands are 0.

Outcomes per tile: ``no_imagery`` when the tile does not touch the image's footprint; ``skipped``
when it does but holds no valid pixel (nodata, black) or is one single colour; else an image, in
which pixels outside the image or without data are black (0), as in training chips.

Sources: a local path, or ``s3://bucket/key`` read in place by GDAL (``/vsis3/``, range requests,
so a COG is never downloaded whole) with the credentials, region and endpoint of the boto3
session; a custom endpoint (``AWS_ENDPOINT_URL``, e.g. the embedded moto server) is passed on to
GDAL as ``AWS_S3_ENDPOINT`` with ``AWS_VIRTUAL_HOSTING=FALSE`` (and ``AWS_HTTPS=NO`` for http).
Reads are thread-safe: each thread has its own open dataset.
"""

from __future__ import annotations

import threading
import warnings
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
from affine import Affine

from looking_glass.errors import EXIT_BAD_INPUT, EXIT_FAILURE, LookingGlassError
from looking_glass.grid import TILE_SIZE, tile_box
from looking_glass.imagery.capture import CaptureDateError, iso_day, parse_capture_date, tiff_capture_date
from looking_glass.imagery.raster import (
    DEFAULT_STRETCH_PERCENTILES,
    READ_OPTIONS,
    RasterError,
    RasterImage,
    alpha_bands,
    check_bands,
    check_stretch_percentiles,
    mercator_outline,
    open_geotiff,
    pixel_size_m,
    select_bands,
)
from looking_glass.imagery.status import TILE_NO_IMAGERY, TILE_SKIPPED
from looking_glass.imagery.tiles import FetchedTile, TransientTileError, classify_rgb


class GeoTiffError(LookingGlassError, ValueError):
    """The GeoTIFF cannot be used as an imagery source (the message says which and why)."""

    exit_code = EXIT_BAD_INPUT


def gdal_s3_env(session):
    """A rasterio environment for /vsis3/ with the boto3 session's credentials (refreshed each
    time the environment is entered), region and endpoint."""
    import rasterio
    from rasterio.session import AWSSession

    opts = {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR", **READ_OPTIONS}
    endpoint = None
    parts = urlsplit(session.client("s3").meta.endpoint_url)
    if parts.hostname and not parts.hostname.endswith(".amazonaws.com"):
        endpoint = parts.netloc  # GDAL's AWS_S3_ENDPOINT: host[:port], no scheme
        opts["AWS_VIRTUAL_HOSTING"] = "FALSE"  # path-style: http://host:port/bucket/key
        opts["AWS_HTTPS"] = "YES" if parts.scheme == "https" else "NO"
    return rasterio.Env(session=AWSSession(session=session, endpoint_url=endpoint), **opts)


def check_s3_object(session, uri: str) -> None:
    """Raise :class:`GeoTiffError` with the reason when the S3 object ``uri`` is missing or
    cannot be read with the boto3 ``session`` (GDAL itself would only say 'not recognized')."""
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, _, key = uri[5:].partition("/")
    try:
        session.client("s3").head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in ("404", "NoSuchKey", "NoSuchBucket", "NotFound"):
            raise GeoTiffError(f"{uri}: no such S3 object") from None
        raise GeoTiffError(f"{uri}: cannot read the S3 object ({code or exc})") from None
    except BotoCoreError as exc:
        raise GeoTiffError(f"{uri}: cannot reach S3 ({type(exc).__name__})", exit_code=EXIT_FAILURE) from None


class GeoTiffTiles:
    """Web-mercator XYZ tiles (256 px) of one GeoTIFF/COG; ``fetch`` gives FetchedTile.

    ``capture_date`` (a datetime or text :func:`~looking_glass.imagery.capture.parse_capture_date`
    reads) overrides the file's TIFF DateTime tag; ``captured`` is the date used (None when
    neither says), ``band_count`` the bands other than alpha, ``outline`` the footprint in web
    mercator, ``dtype`` the data type of the bands read (``uint16``). ``own_stretch`` False (a
    mosaic's image) computes no stretch of its own: the mosaic sets one with :meth:`use_stretch`.
    Raises :class:`GeoTiffError` for a file or date that cannot be used.
    """

    def __init__(
        self,
        source: str,
        bands: tuple[int, ...] | None = None,
        stretch_percentiles: tuple[float, float] = DEFAULT_STRETCH_PERCENTILES,
        session=None,
        capture_date: datetime | str | None = None,
        own_stretch: bool = True,
    ):
        self.source = str(source)
        self.public_name = self.source
        self.is_s3 = self.source.startswith("s3://")
        self._session = None
        if self.is_s3:
            import boto3

            self._session = session or boto3.session.Session()
            check_s3_object(self._session, self.source)
        elif not Path(self.source).is_file():
            raise GeoTiffError(f"{self.source}: no such file")
        try:
            check_bands(bands)
            check_stretch_percentiles(stretch_percentiles)
            with self._env():
                src = open_geotiff(self.source, self.source)
                try:
                    self._image = RasterImage(
                        src, self.source, select_bands(src.count, bands, self.source, alpha_bands(src)),
                        stretch_percentiles, own_stretch=own_stretch,
                    )
                    # The data type(s) of the bands read: what a mosaic's images must agree on.
                    self.dtype = ",".join(sorted({src.dtypes[b - 1] for b in self._image.unique}))
                    self._outline = self._mercator_outline(src, self.source)
                    # Bands other than alpha: what a mosaic's images must agree on.
                    self.band_count = src.count - len(alpha_bands(src))
                    if isinstance(capture_date, str):
                        capture_date = parse_capture_date(capture_date, self.source)
                    self.captured = capture_date or tiff_capture_date(src, self.source)
                except BaseException:
                    src.close()
                    raise
        except (RasterError, CaptureDateError) as exc:
            raise GeoTiffError(str(exc)) from None
        self.bands = self._image.bands
        # rio-tiler warns on every reader of an image without overviews; fine at zoom 18.
        from rio_tiler.errors import NoOverviewWarning

        warnings.filterwarnings("ignore", category=NoOverviewWarning)
        self._lock = threading.Lock()
        self._open: list = [src]
        self._local = threading.local()
        self._local.src = src

    # ---- opening ---------------------------------------------------------------------------
    def _env(self):
        import rasterio

        if not self.is_s3:
            return rasterio.Env(**READ_OPTIONS)
        return gdal_s3_env(self._session)

    @staticmethod
    def _mercator_outline(src, label: str):
        """The image's footprint in web mercator (densified edges), prepared for fast tests;
        RasterError when it cannot be projected."""
        import shapely

        outline = mercator_outline(src, label=label)
        shapely.prepare(outline)
        return outline

    def _reader(self, reopen: bool = False):
        """This thread's rio-tiler reader on its own dataset (opened in the caller's GDAL
        environment)."""
        import rasterio
        from rio_tiler.io import Reader

        reader = getattr(self._local, "reader", None)
        if reader is None or reopen:
            src = self._local.__dict__.pop("src", None)  # the one opened by __init__ on this thread
            if src is None or reopen:
                src = rasterio.open(self.source)
                with self._lock:
                    self._open.append(src)
            reader = self._local.reader = Reader(self.source, dataset=self._north_up(src))
        return reader

    def _north_up(self, src):
        """``src``, or for a south-up file (or one stored east to west) a north-up view of it:
        a WarpedVRT onto the flipped grid (nearest: the same pixels, reordered), so tiles match
        those of the same image stored north-up, as prepare's reads do."""
        if not (self._image.flip_rows or self._image.flip_cols):
            return src
        from rasterio.enums import MaskFlags, Resampling
        from rasterio.vrt import WarpedVRT

        masked = src.nodata is None and any(
            MaskFlags.per_dataset in flags and MaskFlags.alpha not in flags for flags in src.mask_flag_enums
        )
        vrt = WarpedVRT(
            src, crs=src.crs, transform=self._image.transform, width=src.width, height=src.height,
            resampling=Resampling.nearest, add_alpha=masked,
        )
        with self._lock:
            self._open.append(vrt)
        return vrt

    def close(self) -> None:
        """Close every dataset opened by any thread."""
        with self._lock:
            for src in reversed(self._open):  # views before the datasets under them
                src.close()
            self._open.clear()

    def __enter__(self) -> "GeoTiffTiles":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- radiometry ------------------------------------------------------------------------
    @property
    def passes_through(self) -> bool:
        """Whether the bands read are uint8 (no stretch)."""
        return self._image.passes_through

    def stretch_sample(self, max_side: int):
        """This image's :class:`~looking_glass.imagery.mosaic_stretch.StretchSample`, at most
        ``max_side`` pixels a side (a mosaic pools them; read when the mosaic is opened, on the
        opening thread)."""
        from looking_glass.imagery.mosaic_stretch import StretchSample

        src = self._image.src
        with self._env():
            data, valid = self._image.sample(max_side)
        centre_lat = (src.bounds.bottom + src.bounds.top) / 2 if src.crs.is_geographic else None
        px, py = pixel_size_m(src.crs, src.transform, centre_lat)
        decimation = (src.height / valid.shape[0]) * (src.width / valid.shape[1])
        left, bottom, right, top = src.bounds
        return StretchSample(
            data, valid, src.transform @ Affine.scale(src.width / valid.shape[1], src.height / valid.shape[0]),
            src.crs, (min(left, right), min(bottom, top), max(left, right), max(bottom, top)),
            px * py * decimation, self._outline,
        )

    def use_stretch(self, stretch: tuple[np.ndarray, np.ndarray] | None) -> None:
        """Stretch every later tile by ``stretch`` (per-band (low, high), as
        :func:`~looking_glass.imagery.raster.stretch_limits` gives; None only for uint8)."""
        self._image.stretch = stretch

    # ---- tiles -----------------------------------------------------------------------------
    def overlaps(self, x: int, y: int, z: int) -> bool:
        """Whether tile z/x/y touches the image's footprint."""
        return self._outline.intersects(tile_box(x, y, z, mercator=True))

    def read(self, x: int, y: int, z: int) -> np.ndarray | None:
        """(3, 256, 256) float32 of the selected bands, NaN where there is no data; None when the
        tile is outside the image."""
        from rasterio.errors import RasterioError
        from rio_tiler.errors import TileOutsideBounds

        if not (0 <= x < 2**z and 0 <= y < 2**z) or not self.overlaps(x, y, z):
            return None
        last = None
        for attempt in range(2):  # a second try on a fresh dataset (expired S3 credentials)
            try:
                with self._env():
                    img = self._reader(reopen=attempt > 0).tile(
                        x, y, z, tilesize=TILE_SIZE, indexes=self._image.indexes,
                        resampling_method="bilinear", reproject_method="bilinear",
                    )
                break
            except TileOutsideBounds:
                return None
            except RasterioError as exc:
                last = exc
        else:
            raise TransientTileError(f"tile {z}/{x}/{y}: reading {self.source} failed: {type(last).__name__}")
        data, alpha = self._image.split(np.asarray(img.array.data, dtype=np.float32))
        valid = self._image.valid_mask(data, img.mask, alpha)
        data[:, ~valid] = np.nan
        return data

    @property
    def outline(self):
        """The image's footprint: a shapely polygon in web mercator (EPSG:3857 metres)."""
        return self._outline

    def rgb(self, x: int, y: int, z: int) -> tuple[np.ndarray, np.ndarray] | None:
        """(256, 256, 3) uint8 (the stretch applied, 0 on nodata) and the (256, 256) bool mask of
        valid pixels of tile z/x/y; None outside the image."""
        data = self.read(x, y, z)
        if data is None:
            return None
        return self._image.to_uint8(data), ~np.isnan(data).any(0)

    def fetch(self, x: int, y: int, z: int) -> FetchedTile:
        """The tile as the worker sees it: no_imagery outside the image, skipped without data or
        in one colour, else the image (the stretch applied) with its valid fraction and the
        image's capture date."""
        return fetched_from_rgb(x, y, z, self.rgb(x, y, z), iso_day(self.captured))

    def png(self, x: int, y: int, z: int) -> bytes | None:
        """The tile as an RGBA PNG (transparent where there is no data), None outside the image:
        what ``serve-tiles`` answers."""
        return rgba_png(self.rgb(x, y, z))


def lonlat_footprint(outline):
    """A web-mercator footprint (``GeoTiffTiles.outline``, a mosaic's union) in lon/lat degrees
    (EPSG:4326), as a shapely geometry: the AOI that covers the tiles holding imagery."""
    import shapely
    from rasterio.warp import transform

    def to_lonlat(coords: np.ndarray) -> np.ndarray:
        lon, lat = transform("EPSG:3857", "EPSG:4326", list(coords[:, 0]), list(coords[:, 1]))
        return np.column_stack([lon, lat])

    return shapely.transform(outline, to_lonlat)


def fetched_from_rgb(x: int, y: int, z: int, tile, capture_date: str | None) -> FetchedTile:
    """A FetchedTile from ``(rgb, valid)`` of a GeoTIFF or mosaic read (None: outside the
    imagery -> ``no_imagery``; no valid pixel -> ``skipped``); ``capture_date`` as stored."""
    if tile is None:
        return FetchedTile(x, y, z, status=TILE_NO_IMAGERY, reason="outside the image")
    rgb, valid = tile
    if not valid.any():
        return FetchedTile(x, y, z, status=TILE_SKIPPED, reason="no data in the image (nodata)")
    out = classify_rgb(x, y, z, rgb, valid)
    out.capture_date = capture_date
    return out


def rgba_png(tile) -> bytes | None:
    """``(rgb, valid)`` as an RGBA PNG, transparent where not valid; None for None."""
    import io

    from PIL import Image

    if tile is None:
        return None
    rgb, valid = tile
    rgba = np.empty((TILE_SIZE, TILE_SIZE, 4), np.uint8)
    rgba[..., :3] = rgb
    rgba[..., 3] = np.where(valid, 255, 0)
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, format="PNG")
    return buf.getvalue()
