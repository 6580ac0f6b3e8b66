"""Mosaics: several GeoTIFFs/COGs read as one imagery source.

A mosaic is given as (:func:`mosaic_members`):

* a list of GeoTIFF/COG paths or ``s3://`` URIs (text: comma-separated);
* a GDAL VRT (``.vrt``): its ``SourceFilename`` images, in the VRT's order;
* a mosaic document (``.json``/``.geojson``): MosaicJSON (its ``tiles`` assets, in order of first
  appearance) or a STAC item collection (or one item): each item's GeoTIFF asset (the ``visual``
  one, else its only ``image/tiff`` asset) with the item's ``properties.datetime``.

Relative paths are relative to the document. Images must be local files or on S3 (an ``http(s)``
asset is refused: workers read only what was registered). Every image is opened once (its own
band selection and nodata, as a single GeoTIFF source), and all must have the same number of
bands (alpha not counted) and the same data type. Non-uint8 images share **one stretch**: the
percentiles of all their valid pixels together, weighted by ground area, each place counted once
(:mod:`looking_glass.imagery.mosaic_stretch`), so a scene's colours do not depend on how it was
cut into files.

Overlap rule: a tile is read from the images whose footprint touches it, **newest capture first,
then in the order given**; images without a capture date come after dated ones. Each pixel comes
from the first image that has valid data there (rio-tiler's ``mosaic_reader`` with
``FirstMethod``), so a newer scene covers an older one and an older scene fills the newer one's
gaps (nodata, outside its footprint). The tile's capture date is the date of each image that gave
it pixels, newest first (``2024-05-01,2023-04-02``).
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Sequence

import numpy as np

from looking_glass.imagery.capture import CaptureDateError, iso_day, parse_capture_date
from looking_glass.imagery.geotiff import GeoTiffError, GeoTiffTiles, fetched_from_rgb, rgba_png
from looking_glass.imagery.mosaic_stretch import member_sample_side, pooled_stretch_limits
from looking_glass.imagery.tiles import FetchedTile
from looking_glass.runtime.settings import GEOTIFF_SUFFIXES, MOSAIC_DOCUMENT_SUFFIXES

__all__ = ["MOSAIC_DOCUMENT_SUFFIXES", "MosaicError", "MosaicMember", "MosaicTiles", "mosaic_members", "open_geotiff_source"]

# A mosaic document is metadata: anything larger is not one (and is never read whole).
MAX_DOCUMENT_BYTES = 20 * 1024 * 1024


class MosaicError(GeoTiffError):
    """The mosaic or one of its images cannot be used (the message says which and why)."""


@dataclass(frozen=True)
class MosaicMember:
    """One image of a mosaic: its path or ``s3://`` URI and its capture date text (STAC), if any."""

    source: str
    date: str | None = None


# ---- what a mosaic is made of -------------------------------------------------------------------
def _read_document(uri: str, session) -> bytes:
    """The bytes of a local or ``s3://`` mosaic document (at most MAX_DOCUMENT_BYTES)."""
    if uri.startswith("s3://"):
        from botocore.exceptions import BotoCoreError, ClientError

        bucket, _, key = uri[5:].partition("/")
        try:
            body = session.client("s3").get_object(Bucket=bucket, Key=key)["Body"]
            data = body.read(MAX_DOCUMENT_BYTES + 1)
        except (ClientError, BotoCoreError) as exc:
            code = getattr(exc, "response", {}).get("Error", {}).get("Code", type(exc).__name__)
            raise MosaicError(f"{uri}: cannot read the mosaic document ({code})") from None
    else:
        path = Path(uri)
        if not path.is_file():
            raise MosaicError(f"{uri}: no such file")
        with path.open("rb") as fh:
            data = fh.read(MAX_DOCUMENT_BYTES + 1)
    if len(data) > MAX_DOCUMENT_BYTES:
        raise MosaicError(f"{uri}: above {MAX_DOCUMENT_BYTES} bytes: not a mosaic document")
    return data


def _resolve(href: str, document: str, label: str) -> str:
    """``href`` of an image named in ``document``: relative ones resolved against it; only local
    paths and ``s3://`` URIs ending .tif/.tiff (GDAL's ``/vsis3/`` written back as ``s3://``)."""
    href = href.strip()
    if href.startswith("/vsis3/"):
        href = "s3://" + href[len("/vsis3/"):]
    if "://" in href and not href.startswith("s3://"):
        raise MosaicError(f"{label}: image {href!r} is not a local path or s3:// URI (other URLs are not read)")
    if not href.lower().endswith(GEOTIFF_SUFFIXES):
        raise MosaicError(f"{label}: image {href!r} is not a GeoTIFF (.tif/.tiff)")
    if href.startswith("s3://") or Path(href).is_absolute():
        return href
    if document.startswith("s3://"):
        return "s3://" + str(PurePosixPath(document[5:]).parent / href)
    return str(Path(document).parent / href)


def _vrt_members(data: bytes, uri: str) -> list[MosaicMember]:
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise MosaicError(f"{uri}: not a readable VRT ({exc})") from None
    if root.tag != "VRTDataset":
        raise MosaicError(f"{uri}: not a GDAL VRT (root element <{root.tag}>, not <VRTDataset>)")
    hrefs = list(dict.fromkeys(el.text or "" for el in root.iter("SourceFilename")))
    return [MosaicMember(_resolve(h, uri, uri)) for h in hrefs]


def _stac_asset(item: dict, label: str) -> str:
    assets = item.get("assets")
    if not isinstance(assets, dict) or not assets:
        raise MosaicError(f"{label}: the STAC item has no assets")
    visual = assets.get("visual") or next(
        (a for a in assets.values() if isinstance(a, dict) and "visual" in (a.get("roles") or [])), None
    )
    if visual is None:
        tiffs = [a for a in assets.values() if isinstance(a, dict) and "image/tiff" in str(a.get("type", ""))]
        if len(tiffs) != 1:
            raise MosaicError(
                f"{label}: cannot tell which asset is the image ({len(tiffs)} image/tiff assets and "
                "no 'visual' one)"
            )
        visual = tiffs[0]
    if not isinstance(visual, dict) or not isinstance(visual.get("href"), str):
        raise MosaicError(f"{label}: the image asset has no href")
    return visual["href"]


# What --imagery takes, said when a JSON document is something else (footprints given by mistake).
IMAGERY_FORMS = (
    "give a GeoTIFF/COG, an XYZ template, a mosaic list (GeoTIFFs, a .vrt, MosaicJSON) or a STAC "
    "item/item collection; building footprints go to demo --truth or prepare --footprints"
)
_GEOJSON_GEOMETRIES = {"Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon",
                       "GeometryCollection"}


def _geometry_kind(feature) -> str:
    """``'polygon'``, ``'point'``, ... for a GeoJSON feature; ``'geometry-less'`` without one."""
    geometry = feature.get("geometry") if isinstance(feature, dict) else None
    kind = geometry.get("type") if isinstance(geometry, dict) else None
    return str(kind).lower() if kind else "geometry-less"


def _not_imagery(doc) -> str | None:
    """What a JSON document that is not a mosaic *is* (``"a GeoJSON of 43 polygon features"``),
    or None when it may be one: MosaicJSON, or a Feature/FeatureCollection that is STAC (a
    ``stac_version`` or an item with ``assets``), or an empty FeatureCollection (which names no image)."""
    if not isinstance(doc, dict):
        return "a JSON " + {list: "list", str: "string", int: "number", float: "number"}.get(type(doc), "value")
    kind = doc.get("type")
    if "mosaicjson" in doc:
        return None
    if kind in ("Feature", "FeatureCollection"):
        items = [doc] if kind == "Feature" else doc.get("features")
        if isinstance(items, list) and (not items or "stac_version" in doc or any(
                isinstance(i, dict) and ("stac_version" in i or isinstance(i.get("assets"), dict)) for i in items)):
            return None
        if kind == "Feature":
            return f"a GeoJSON {_geometry_kind(doc)} feature without STAC assets"
        if not isinstance(items, list):
            return "a GeoJSON FeatureCollection without a 'features' list"
        counts = Counter(_geometry_kind(f) for f in items).most_common()
        return "a GeoJSON of " + " and ".join(f"{n} {k}" for k, n in counts) + f" feature{'s' * (len(items) > 1)}"
    if kind in _GEOJSON_GEOMETRIES:
        return f"a GeoJSON {kind} geometry"
    if kind == "Collection" and "stac_version" in doc:
        return "a STAC Collection (its items are not in it: give the item collection, e.g. a STAC API search's result)"
    if doc.get("format") == "looking-glass-chips":
        return "a prepared dataset's manifest (looking-glass-chips)"
    keys = ", ".join(sorted(map(str, doc))[:6]) or "empty"
    return f"a JSON object ({keys}) that is neither MosaicJSON nor STAC"


def _document_members(data: bytes, uri: str) -> list[MosaicMember]:
    try:
        doc = json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MosaicError(f"{uri}: not a readable mosaic document (not JSON: {exc})") from None
    what = _not_imagery(doc)
    if what is not None:
        raise MosaicError(f"{uri}: {what}, not imagery: {IMAGERY_FORMS}")
    if isinstance(doc, dict) and "mosaicjson" in doc:
        tiles = doc.get("tiles")
        if not isinstance(tiles, dict) or not all(isinstance(v, list) for v in tiles.values()):
            raise MosaicError(f"{uri}: MosaicJSON without a 'tiles' object of asset lists")
        hrefs = list(dict.fromkeys(str(a) for assets in tiles.values() for a in assets))
        return [MosaicMember(_resolve(h, uri, uri)) for h in hrefs]
    if isinstance(doc, dict) and doc.get("type") == "Feature":
        items = [doc]
    else:  # a FeatureCollection with a features list (_not_imagery refused everything else)
        items = doc["features"]
    members = []
    for i, item in enumerate(items):
        label = f"{uri} item {item.get('id', i) if isinstance(item, dict) else i}"
        if not isinstance(item, dict):
            raise MosaicError(f"{label}: not a STAC item (a JSON object)")
        props = item.get("properties") if isinstance(item.get("properties"), dict) else {}
        when = props.get("datetime") or props.get("start_datetime")
        if when is not None:
            try:
                parse_capture_date(when, label)
            except CaptureDateError as exc:
                raise MosaicError(str(exc)) from None
        members.append(MosaicMember(_resolve(_stac_asset(item, label), uri, label), when))
    return members


def mosaic_members(spec: str | Sequence[str], session=None) -> list[MosaicMember]:
    """The images of a mosaic ``spec`` (see the module): a list (or comma-separated text) of
    GeoTIFFs, a ``.vrt``, or a MosaicJSON / STAC document, local or on S3 (read with the boto3
    ``session``). Raises :class:`MosaicError` for an unreadable document or an empty mosaic."""
    if isinstance(spec, str):
        parts = [p.strip() for p in spec.split(",") if p.strip()]
    else:
        parts = [str(p).strip() for p in spec]
    if len(parts) == 1 and parts[0].lower().endswith(MOSAIC_DOCUMENT_SUFFIXES):
        uri = parts[0]
        if uri.startswith("s3://") and session is None:
            import boto3

            session = boto3.session.Session()
        data = _read_document(uri, session)
        members = _vrt_members(data, uri) if uri.lower().endswith(".vrt") else _document_members(data, uri)
        label = uri
    else:
        members = [MosaicMember(_resolve(p, ".", "mosaic")) for p in parts]
        label = ",".join(parts)
    if not members:
        raise MosaicError(f"{label}: the mosaic names no image")
    return members


# ---- reading --------------------------------------------------------------------------------
class MosaicTiles:
    """Several opened GeoTIFF sources read as one (module docstring: the overlap rule); the same
    interface as :class:`GeoTiffTiles` (``fetch``, ``png``, ``overlaps``, ``outline``, ``close``).
    Opening computes the mosaic's one stretch (the default 2-98 percentiles) and sets it on every
    image, replacing any of their own. Raises :class:`MosaicError` when the images differ in band count or data type."""

    def __init__(self, images: Sequence[GeoTiffTiles], name: str):
        if not images:
            raise MosaicError(f"{name}: the mosaic names no image")
        counts = {img.band_count for img in images}
        if len(counts) > 1:
            listing = ", ".join(f"{img.source}: {img.band_count}" for img in images)
            raise MosaicError(f"{name}: the images of a mosaic must have the same number of bands ({listing})")
        if len({img.dtype for img in images}) > 1:
            listing = ", ".join(f"{img.source}: {img.dtype}" for img in images)
            raise MosaicError(
                f"{name}: the images of a mosaic must have the same data type, as one stretch is used for all "
                f"of them ({listing}); convert them first, e.g. gdal_translate -ot UInt16 in.tif out.tif"
            )
        # Newest first, undated last, ties in the order given (sorted() is stable).
        # (sorted() keeps the order of equal keys, with reverse=True too).
        dated = sorted((img for img in images if img.captured), key=lambda img: img.captured, reverse=True)
        self.images = dated + [img for img in images if not img.captured]
        self.public_name = name
        self.source = name
        self.bands = self.images[0].bands  # the same count everywhere, so the same default choice
        self.captured = max((img.captured for img in images if img.captured), default=None)
        # One stretch for every image (mosaic_stretch: the pooled rule), so colours do not depend
        # on how the scene was cut into files; uint8 imagery passes through.
        if not self.images[0].passes_through:
            side = member_sample_side(len(self.images))
            stretch = pooled_stretch_limits([img.stretch_sample(side) for img in self.images])
            for img in self.images:
                img.use_stretch(stretch)
        import shapely

        self._outline = shapely.union_all([img.outline for img in images])
        shapely.prepare(self._outline)

    @property
    def outline(self):
        """The union of the images' footprints, in web mercator (EPSG:3857 metres)."""
        return self._outline

    def overlaps(self, x: int, y: int, z: int) -> bool:
        """Whether tile z/x/y touches any image."""
        return any(img.overlaps(x, y, z) for img in self.images)

    def rgb_used(self, x: int, y: int, z: int):
        """((256, 256, 3) uint8, (256, 256) valid mask, images that gave pixels, newest first),
        or None when no image covers tile z/x/y."""
        from rio_tiler.errors import EmptyMosaicError, TileOutsideBounds
        from rio_tiler.models import ImageData
        from rio_tiler.mosaic import mosaic_reader
        from rio_tiler.mosaic.methods.defaults import FirstMethod

        candidates = [img for img in self.images if img.overlaps(x, y, z)]
        masks: dict[int, np.ndarray] = {}

        def read_one(img: GeoTiffTiles, tx: int, ty: int, tz: int) -> ImageData:
            tile = img.rgb(tx, ty, tz)
            if tile is None:
                raise TileOutsideBounds(f"{img.source}: tile {tz}/{tx}/{ty} outside")
            rgb, valid = tile
            masks[id(img)] = valid
            bands = np.moveaxis(rgb, -1, 0)
            return ImageData(np.ma.MaskedArray(bands, mask=np.broadcast_to(~valid, bands.shape).copy()))

        if not candidates:
            return None
        try:  # threads=1: the worker already reads many tiles at once
            img, used = mosaic_reader(candidates, read_one, x, y, z, pixel_selection=FirstMethod(), threads=1)
        except EmptyMosaicError:
            return None
        array = img.array
        valid = ~np.ma.getmaskarray(array).any(0)
        rgb = np.ascontiguousarray(np.moveaxis(np.ma.filled(array, 0).astype(np.uint8), 0, -1))
        # Which images gave pixels: each covers what the ones before it left empty.
        filled = np.zeros_like(valid)
        gave = []
        for member in used:
            mine = masks[id(member)] & ~filled
            if mine.any():
                gave.append(member)
                filled |= mine
        return rgb, valid, gave

    def fetch(self, x: int, y: int, z: int) -> FetchedTile:
        """The tile as the worker sees it (as :meth:`GeoTiffTiles.fetch`); its capture date is
        those of the images that gave it pixels, newest first."""
        read = self.rgb_used(x, y, z)
        if read is None:
            return fetched_from_rgb(x, y, z, None, None)
        rgb, valid, gave = read
        dates = list(dict.fromkeys(d for d in (iso_day(img.captured) for img in gave) if d))
        return fetched_from_rgb(x, y, z, (rgb, valid), ",".join(dates) or None)

    def png(self, x: int, y: int, z: int) -> bytes | None:
        """The tile as an RGBA PNG (transparent where no image has data), None outside them all."""
        read = self.rgb_used(x, y, z)
        return None if read is None else rgba_png(read[:2])

    def close(self) -> None:
        """Close every image."""
        for img in self.images:
            img.close()

    def __enter__(self) -> "MosaicTiles":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def is_mosaic_spec(spec: str | Sequence[str]) -> bool:
    """Whether ``spec`` names a mosaic (a list, comma-separated text, or a mosaic document)
    rather than one GeoTIFF."""
    if not isinstance(spec, str):
        return True
    return "," in spec or spec.strip().lower().endswith(MOSAIC_DOCUMENT_SUFFIXES)


def open_geotiff_source(
    spec: str | Sequence[str],
    bands: tuple[int, ...] | None = None,
    session=None,
    capture_date: str | None = None,
):
    """A :class:`GeoTiffTiles` for one GeoTIFF, else a :class:`MosaicTiles` of the images
    :func:`mosaic_members` finds. ``capture_date`` (registered with the source) applies to every
    image without a STAC date and overrides TIFF tags. Raises :class:`GeoTiffError` (a
    :class:`MosaicError` for the mosaic itself) with a message naming the image and the problem."""
    if capture_date is not None:
        try:
            parse_capture_date(capture_date, str(spec))
        except CaptureDateError as exc:
            raise GeoTiffError(str(exc)) from None
    if not is_mosaic_spec(spec):
        return GeoTiffTiles(spec, bands=bands, session=session, capture_date=capture_date)
    name = spec if isinstance(spec, str) else ",".join(map(str, spec))
    members = mosaic_members(spec, session)
    opened: list[GeoTiffTiles] = []
    try:
        for m in members:
            opened.append(GeoTiffTiles(m.source, bands=bands, session=session, capture_date=m.date or capture_date,
                                       own_stretch=False))  # MosaicTiles sets the mosaic's one stretch
        return MosaicTiles(opened, name)
    except BaseException:
        for img in opened:
            img.close()
        raise
