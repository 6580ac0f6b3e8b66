"""The worker's imagery catalogue: the deployment's named sources, each opened once.

Work units name a registered source (``WorkUnit.imagery``, see
:mod:`looking_glass.runtime.imagery_sources`) or none (the deployment's default). The catalogue
opens a source the first time a unit asks for it and keeps it for the worker's life, so a GeoTIFF
or mosaic is opened (and its stretch computed) once, and a URL template gets one connection pool.
A name that is not registered is :class:`UnknownImagery`, never a fetch: the worker sends that
unit to the dead-letter queue with the reason.

A unit also carries the digest of the source's definition its job was enumerated against
(``WorkUnit.imagery_digest``). Where the worker's definition of that name has another digest (the
deployment redefined the source while the unit was queued), :meth:`ImageryCatalog.get` gives a
:class:`RedefinedSource` instead, which reads nothing and fails every tile with the reason: the
job's results never mix two imageries, and no retry reads the new one for the old job.
"""

from __future__ import annotations

import threading
from dataclasses import replace

from looking_glass.imagery.status import TILE_FAILED
from looking_glass.imagery.tiles import FetchedTile
from looking_glass.imagery.xyz import ImagerySourceError, open_imagery
from looking_glass.runtime.imagery_sources import ImagerySource, single_source, unknown_imagery_reason
from looking_glass.runtime.settings import WorkerSettings

__all__ = ["DatedTiles", "ImageryCatalog", "RedefinedSource", "UnknownImagery", "redefined_reason"]


class UnknownImagery(ImagerySourceError):
    """A work unit names a source the deployment did not register."""


class DatedTiles:
    """A tile source whose tiles all carry one registered capture date (URL templates, whose
    servers do not say when the imagery was taken)."""

    def __init__(self, inner, date: str):
        self.inner = inner
        self.date = date
        self.public_name = inner.public_name

    def fetch(self, x: int, y: int, z: int) -> FetchedTile:
        """The inner source's tile, dated where it holds imagery or was judged (not failed)."""
        tile = self.inner.fetch(x, y, z)
        if tile.capture_date is None and tile.image is not None:
            tile.capture_date = self.date
        return tile

    def close(self) -> None:
        """Close the inner source."""
        self.inner.close()


def redefined_reason(name: str, submitted: str, current: str) -> str:
    """The failed tiles' reason when source ``name`` was defined with digest ``submitted`` when
    the job was enumerated and is defined with ``current`` now."""
    return (f"imagery source {name!r} was redefined after this job was submitted (digest {submitted} != {current}): "
            "submit the AOI again for a job on the new definition")


class RedefinedSource:
    """Stands for a source whose definition changed since a unit's job was enumerated: reads
    nothing, every tile is ``failed`` with :func:`redefined_reason` (a final status, stored and
    counted once like any failed tile)."""

    def __init__(self, name: str, submitted: str, current: str):
        self.reason = redefined_reason(name, submitted, current)
        # What the tile items record as their imagery: nothing was read.
        self.public_name = f"{name} (redefined; not read)"

    def fetch(self, x: int, y: int, z: int) -> FetchedTile:
        """The tile, failed with the reason."""
        return FetchedTile(x, y, z, status=TILE_FAILED, reason=self.reason)

    def close(self) -> None:
        """Nothing to close."""


class ImageryCatalog:
    """Registered sources by name (``settings.imagery_sources``), opened on first use; the
    default (``settings.default_imagery``) is ``default_source`` when given (the worker opens its
    single source at start-up, before the model loads, so a bad one fails fast)."""

    def __init__(self, settings: WorkerSettings, session=None, default_source=None):
        self.settings = settings
        self.session = session
        self.default_name = settings.default_imagery
        self._lock = threading.Lock()
        self._open: dict[str, object] = {}
        if default_source is not None:
            self._open[self.default_name] = default_source

    def names(self) -> list[str]:
        """Every name a unit may give: the registered sources and the default."""
        return sorted({*self.settings.imagery_sources, self.default_name})

    def definition(self, name: str | None) -> ImagerySource:
        """The worker's definition of source ``name`` (None: the default; the single source of
        LG_TILE_URL_TEMPLATE / LG_IMAGERY_GEOTIFF as ``single_source`` makes it, as the
        deployment gives it to the enumerator); :class:`UnknownImagery` for a name not registered."""
        name = name or self.default_name
        entry = self.settings.imagery_sources.get(name)
        if entry is None and name == self.default_name:
            s = self.settings
            return single_source(name, s.tile_url_template, s.imagery_geotiff, s.imagery_bands)
        if entry is None:
            raise UnknownImagery(unknown_imagery_reason(name, self.names()))
        return entry

    def get(self, name: str | None, digest: str | None = None):
        """The open source named ``name`` (None: the default); :class:`UnknownImagery` for a name
        not registered, :class:`ImagerySourceError` when a registered one cannot be opened. With
        ``digest`` (the unit's ``imagery_digest``) unlike the definition's here: a
        :class:`RedefinedSource` (nothing opened)."""
        if digest is not None:
            current = self.definition(name).digest
            if current != digest:
                return RedefinedSource(name or self.default_name, digest, current)
        name = name or self.default_name
        with self._lock:  # opened once, even when several units ask at the same time
            if name not in self._open:
                entry = self.settings.imagery_sources.get(name)
                if entry is None and name == self.default_name:
                    # The single source of LG_TILE_URL_TEMPLATE / LG_IMAGERY_GEOTIFF.
                    self._open[name] = open_imagery(self.settings, self.session)
                    return self._open[name]
                if entry is None:
                    raise UnknownImagery(unknown_imagery_reason(name, self.names()))
                self._open[name] = self._open_entry(entry)
            return self._open[name]

    def _open_entry(self, entry: ImagerySource):
        """One registered source opened with the worker's download and token settings."""
        if entry.is_template:
            settings = replace(self.settings, tile_url_template=entry.source, imagery_geotiff="", imagery_bands=None,
                               imagery_token_header="")
            if "{token}" not in entry.source:
                settings = replace(settings, imagery_secret="")  # the token only where asked for
            opened = open_imagery(settings, self.session)
            return DatedTiles(opened, entry.date) if entry.date else opened
        from looking_glass.imagery.geotiff import GeoTiffError
        from looking_glass.imagery.mosaic import open_geotiff_source

        try:
            return open_geotiff_source(entry.source, bands=entry.bands, session=self.session, capture_date=entry.date)
        except GeoTiffError as exc:
            raise ImagerySourceError(f"imagery source {entry.name!r}: {exc}") from None

    def close(self) -> None:
        """Close every source opened."""
        with self._lock:
            for source in self._open.values():
                source.close()
            self._open.clear()
