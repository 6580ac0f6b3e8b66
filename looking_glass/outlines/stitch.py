"""Streaming stitching: tiles' pieces -> whole buildings, with memory bounded by about two rows of
tiles.

Rule
----
Tiles are added in row-major order (``y`` ascending, then ``x``), all at one zoom and size; tiles
may be missing (a job's cover need not be a rectangle). When a tile arrives its pieces are
compared with those of its already-seen neighbours across each shared edge (:mod:`.vectorize`'s
edge vectors): two pieces that face each other along ``L`` pixels of the edge are one building if
``L >= min_shared * min(La, Lb)``, where ``La`` and ``Lb`` are the pieces' own lengths on that edge.
With ``min_shared = 0`` (binary head) any contact joins, which reproduces the 4-connected
regions of the whole mosaic exactly; the sdt head uses 0.5, so a neighbour that only grazes a
piece (two touching buildings split by the watershed) is not swallowed. The sdt head adds the
watershed's own rule across the edge: two pieces whose peaks both rise at least ``split_depth_m``
above the highest signed distance where they meet are two buildings joined by a neck that lies on
the tile edge, and stay apart.

A group that comes to span more than ``max_tiles`` tiles is emitted at once, as it is, with
``complete=False``; pieces that later join it start a new building. Real buildings span a few
tiles at most (a 300 m factory hall at zoom 18 spans three); this bounds the work and memory a
runaway prediction (a blob over a whole district) can cost.

A group of joined pieces is *finished* when every neighbour tile its pieces touch has been passed
in row-major order (seen or skipped). Then its pieces are unioned (exact: they share integer
pixel-edge coordinates) and each resulting polygon becomes a :class:`Building`: small specks
dropped (``min_area_m2``, latitude-correct), simplified, optionally regularised, converted to
lon/lat (RFC 7946). Pieces touching no tile edge are finished at once. Only groups touching the
edge between the previous row and the current one stay open, so memory is bounded by the
width of the job, never its height.

``Building.tile`` is the tile holding the building's centroid (its representative point when the
centroid falls outside the polygon, e.g. for an L-shape spanning three tiles); that is the tile
whose ``building_count`` counts it (:func:`count_by_tile`).
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import shapely

from looking_glass.outlines.errors import OutlinesError
from looking_glass.outlines.georef import m_per_px, px_area_m2, to_lonlat
from looking_glass.outlines.shapes import regularise, simplify_all
from looking_glass.outlines.vectorize import TilePieces, tile_pieces

__all__ = ["Building", "OutlineOptions", "Stitcher", "count_by_tile", "outline_rows", "outline_tiles"]

# direction -> (dx, dy, this tile's edge, the neighbour's facing edge)
_NEIGHBOURS = {"n": (0, -1, "n", "s"), "s": (0, 1, "s", "n"), "w": (-1, 0, "w", "e"), "e": (1, 0, "e", "w")}


@dataclass(frozen=True)
class OutlineOptions:
    """How predictions become outlines.

    head: "binary" (probability) or "sdt" (signed distance, metres).
    threshold: building where prob >= threshold (binary; default 0.5) or sdt > threshold (metres;
        default 0.0).
    split_depth_m: sdt head, least saddle depth between two peaks to split them (metres).
    min_area_m2: buildings smaller than this (after stitching) are dropped.
    simplify: Douglas-Peucker tolerance, in ``simplify_unit`` ("px" or "m"); 0 keeps pixel edges.
    regularise: square the corners on the dominant orientation (see :mod:`.shapes`).
    min_shared: share of the shorter piece's edge length two pieces must face each other along
        to be joined across a tile edge; None = 0 for the binary head, 0.5 for the sdt head.
    max_tiles: a building spanning more tiles is emitted in parts (see the module docstring).
    """

    head: str = "binary"
    threshold: float | None = None
    split_depth_m: float = 1.0
    min_area_m2: float = 5.0
    simplify: float = 1.0
    simplify_unit: str = "px"
    regularise: bool = False
    min_shared: float | None = None
    max_tiles: int = 16

    def __post_init__(self):
        if self.head not in ("binary", "sdt"):
            raise OutlinesError(f"unknown head {self.head!r}: use 'binary' or 'sdt'")
        if self.simplify_unit not in ("px", "m"):
            raise OutlinesError(f"simplify_unit must be 'px' or 'm', got {self.simplify_unit!r}")
        if self.min_area_m2 < 0 or self.simplify < 0:
            raise OutlinesError("min_area_m2 and simplify must not be negative")
        if self.max_tiles < 1:
            raise OutlinesError(f"max_tiles must be at least 1, got {self.max_tiles}")

    @property
    def shared_fraction(self) -> float:
        """The ``min_shared`` in force: as given, else 0 (binary head) or 0.5 (sdt head)."""
        if self.min_shared is not None:
            return float(self.min_shared)
        return 0.0 if self.head == "binary" else 0.5


@dataclass
class Building:
    """One finished building.

    id: sequence number in emission order (1, 2, ...). polygon: shapely Polygon in lon/lat
    degrees (EPSG:4326, RFC 7946 orientation). area_m2: its ground area (of the emitted shape).
    tile: (z, x, y) of the tile counting it. tiles: how many tiles its pixels came from.
    complete: False for a part of a group cut at ``max_tiles`` (see the module docstring).
    """

    id: int
    polygon: object
    area_m2: float
    tile: tuple[int, int, int]
    tiles: int = 1
    complete: bool = True

    def properties(self) -> dict:
        """Flat attributes for exports: id, area_m2 (rounded to 0.01), z, x, y, tiles, complete."""
        z, x, y = self.tile
        return {"id": self.id, "area_m2": round(float(self.area_m2), 2), "z": z, "x": x, "y": y,
                "tiles": self.tiles, "complete": self.complete}


class _Groups:
    """Union-find over piece keys (z, x, y, label)."""

    def __init__(self):
        self.parent: dict = {}

    def add(self, key):
        self.parent.setdefault(key, key)

    def find(self, key):
        root = key
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[key] != root:
            self.parent[key], key = root, self.parent[key]
        return root

    def union(self, a, b):
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[rb] = ra
        return ra


class Stitcher:
    """Join :class:`TilePieces` added in row-major order into :class:`Building` records.

    ``add(pieces)`` returns the buildings finished by that tile, ``finish()`` the rest; the module
    docstring gives the rule. Raises OutlinesError for tiles out of order, of another zoom or size.
    """

    def __init__(self, options: OutlineOptions | None = None):
        self.options = options or OutlineOptions()
        self._last: tuple[int, int] | None = None  # (y, x) of the last tile added
        self._zoom: int | None = None
        self._size: int | None = None
        self._edges: dict[tuple[int, int], tuple] = {}  # (x, y) -> (edges, values) of tiles still needed
        self._peaks: dict = {}  # piece key -> highest signed distance (sdt head)
        self._geoms: dict = {}  # piece key -> world-pixel polygon
        self._members: dict = {}  # group root -> list of piece keys
        self._tiles: dict = {}  # group root -> set of the (x, y) tiles of its pieces
        self._overflow: set = set()  # roots of groups grown past max_tiles
        self._due: dict = {}  # group root -> (y, x) of the last neighbour tile it waits for
        self._heap: list = []  # (due (y, x), root)
        self._uf = _Groups()
        self._next_id = 1
        self._row: int | None = None
        self.tiles_added = 0

    # ---- intake -----------------------------------------------------------------------------------
    def add(self, pieces: TilePieces) -> list[Building]:
        """Add one tile's pieces (the next in row-major order); returns the buildings it finished."""
        z, x, y, size = pieces.z, pieces.x, pieces.y, pieces.size
        if self._zoom is None:
            self._zoom, self._size = z, size
        elif (z, size) != (self._zoom, self._size):
            raise OutlinesError(f"tile {z}/{x}/{y}: all tiles must be zoom {self._zoom}, {self._size} px")
        if self._last is not None and (y, x) <= self._last:
            raise OutlinesError(f"tile {z}/{x}/{y} added after {z}/{self._last[1]}/{self._last[0]}: "
                                "tiles must come in row-major order (y, then x), each once")
        self._last = (y, x)
        self.tiles_added += 1
        done: list = []  # (pieces, tiles) of the buildings finished by this tile
        touching = pieces.touching()
        for label, geom in pieces.polygons.items():
            if label not in touching:
                done.append(([geom], 1, True))
                continue
            key = (x, y, label)
            self._uf.add(key)
            self._geoms[key] = geom
            if pieces.peaks is not None:
                self._peaks[key] = pieces.peaks.get(label, float("inf"))
            self._members[key] = [key]
            self._tiles[key] = {(x, y)}
            due = (-1, -1)
            for dx, dy, mine, _ in _NEIGHBOURS.values():
                if label in pieces.edges[mine]:
                    due = max(due, (y + dy, x + dx))
            self._set_due(key, due)
        values = pieces.values or {}
        for dx, dy, mine, theirs in _NEIGHBOURS.values():
            other = self._edges.get((x + dx, y + dy))
            if other is not None:
                self._join((x, y, pieces.edges[mine], values.get(mine)),
                           (x + dx, y + dy, other[0][theirs], (other[1] or {}).get(theirs)))
        self._edges[(x, y)] = (pieces.edges, pieces.values)
        self._forget_edges(x, y)
        for root in self._overflow:
            if root in self._due:
                del self._due[root]
                done.append(self._take(root, complete=False))
        self._overflow.clear()
        return self._finalise(done + self._pop_finished((y, x)))

    def finish(self) -> list[Building]:
        """The buildings still open (call once after the last tile)."""
        out = self._finalise(self._pop_finished((float("inf"), float("inf"))))
        self._edges.clear()
        return out

    def open_from_row(self) -> int | None:
        """The northernmost tile row holding a piece of a building not emitted yet (None when
        every piece added so far has been emitted)."""
        return min((key[1] for key in self._geoms), default=None)

    # ---- joining ------------------------------------------------------------------------------------
    def _join(self, here: tuple, there: tuple) -> None:
        """Join the pieces facing each other across one edge: ``here`` and ``there`` are
        (x, y, labels along the edge, signed distance along it or None) of the two tiles."""
        x, y, mine, v_mine = here
        ox, oy, theirs, v_theirs = there
        both = (mine > 0) & (theirs > 0)
        if not both.any():
            return
        frac, depth = self.options.shared_fraction, self.options.split_depth_m
        a, b = mine[both].astype(np.int64), theirs[both].astype(np.int64)
        pairs, inverse, shared = np.unique(np.stack([a, b]), axis=1, return_inverse=True, return_counts=True)
        contact = None
        if v_mine is not None and v_theirs is not None:
            meet = (np.asarray(v_mine)[both] + np.asarray(v_theirs)[both]) / 2
            contact = np.full(len(shared), -np.inf)
            np.maximum.at(contact, inverse.reshape(-1), meet)
        len_a = dict(zip(*np.unique(mine[mine > 0], return_counts=True), strict=True))
        len_b = dict(zip(*np.unique(theirs[theirs > 0], return_counts=True), strict=True))
        for k, ((la, lb), n) in enumerate(zip(pairs.T, shared, strict=True)):
            if frac > 0 and n < frac * min(len_a[la], len_b[lb]):
                continue
            ka, kb = (x, y, int(la)), (ox, oy, int(lb))
            if kb not in self._uf.parent or ka not in self._uf.parent:
                continue  # a piece of a group already emitted at max_tiles
            if contact is not None:
                lowest_peak = min(self._peaks.get(ka, np.inf), self._peaks.get(kb, np.inf))
                if lowest_peak - contact[k] >= depth:
                    continue  # a saddle on the tile edge: two buildings
            ra, rb = self._uf.find(ka), self._uf.find(kb)
            if ra == rb:
                continue
            root = self._uf.union(ra, rb)
            other = rb if root == ra else ra
            self._members[root].extend(self._members.pop(other))
            self._tiles[root] |= self._tiles.pop(other)
            self._set_due(root, max(self._due.pop(other), self._due[root]))
            if len(self._tiles[root]) > self.options.max_tiles:
                self._overflow.add(root)

    def _set_due(self, root, due) -> None:
        self._due[root] = due
        heapq.heappush(self._heap, (due, root))

    def _forget_edges(self, x, y) -> None:
        # A tile's edges are needed by its east and south neighbours only: drop the tile above
        # this one, and on a new row every tile of rows before the previous one (gaps in a cover).
        self._edges.pop((x, y - 1), None)
        if y != self._row:
            self._row = y
            for key in [k for k in self._edges if k[1] < y - 1]:
                del self._edges[key]

    def _pop_finished(self, now) -> list:
        out: list = []
        while self._heap and self._heap[0][0] <= now:
            due, root = heapq.heappop(self._heap)
            if self._due.get(root) != due:
                continue  # stale entry: merged away or re-queued with a later due tile
            del self._due[root]
            out.append(self._take(root))
        return out

    def _take(self, root, complete: bool = True) -> tuple:
        """Remove the group of ``root``: (its piece polygons, its tile count, complete)."""
        keys = self._members.pop(root)
        geoms = [self._geoms.pop(k) for k in keys]
        for k in keys:
            del self._uf.parent[k]
            self._peaks.pop(k, None)
        return geoms, len(self._tiles.pop(root)), complete

    # ---- finished buildings ---------------------------------------------------------------------
    def _finalise(self, groups: list) -> list[Building]:
        """Buildings of finished groups ((pieces, tiles, complete) triples), shapely-vectorised.

        Geometry work happens in coordinates local to each group (shifted by a whole number of
        pixels, which is exact): world pixel coordinates reach 6.7e7 at zoom 18, and GEOS
        overlays are many times slower and less robust that far from the origin."""
        if not groups:
            return []
        opts, z, size = self.options, self._zoom, self._size
        pieces = np.empty(sum(len(g) for g, _, _ in groups), dtype=object)
        pieces[:] = [p for g, _, _ in groups for p in g]
        owner = np.repeat(np.arange(len(groups)), [len(g) for g, _, _ in groups])
        first = np.r_[0, np.cumsum([len(g) for g, _, _ in groups])[:-1]]
        origin = np.floor(shapely.bounds(pieces[first])[:, :2])  # (groups, 2) whole pixels
        pieces = _shifted(pieces, -origin[owner])
        merged = np.empty(len(groups), dtype=object)
        merged[:] = [pieces[i] if n == 1 else shapely.union_all(pieces[i:i + n])
                     for i, n in zip(first, (len(g) for g, _, _ in groups), strict=True)]
        polys, index = shapely.get_parts(merged, return_index=True)
        origin = origin[index]
        n_tiles = np.array([n for _, n, _ in groups])[index]
        complete = np.array([c for _, _, c in groups])[index]

        def ground_area(geoms):
            return shapely.area(geoms) * px_area_m2(shapely.get_y(shapely.centroid(geoms)) + origin[:, 1], z, size)

        keep = ~shapely.is_empty(polys)
        keep[keep] = ground_area(polys)[keep] >= opts.min_area_m2
        polys, origin, n_tiles, complete = polys[keep], origin[keep], n_tiles[keep], complete[keep]
        if len(polys) == 0:
            return []
        tol = opts.simplify
        if opts.simplify_unit == "m" and tol > 0:
            tol = tol / m_per_px(shapely.get_y(shapely.centroid(polys)) + origin[:, 1], z, size)
        shapes = simplify_all(polys, tol)
        if opts.regularise:
            shapes[:] = [regularise(p) for p in shapes]
        cent = shapely.centroid(shapes)
        point = np.where(shapely.contains(shapes, cent), cent, shapely.point_on_surface(shapes))
        tx = np.floor((shapely.get_x(point) + origin[:, 0]) / size).astype(np.int64)
        ty = np.floor((shapely.get_y(point) + origin[:, 1]) / size).astype(np.int64)
        areas = ground_area(shapes)
        lonlat = to_lonlat(_shifted(shapes, origin), z, size)
        out = []
        for i in range(len(shapes)):
            out.append(Building(self._next_id, lonlat[i], float(areas[i]), (z, int(tx[i]), int(ty[i])),
                                int(n_tiles[i]), bool(complete[i])))
            self._next_id += 1
        return out


def _shifted(geoms: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Each geometry of ``geoms`` moved by its row of ``offsets`` ((N, 2), x and y)."""
    coords, index = shapely.get_coordinates(geoms, return_index=True)
    return shapely.set_coordinates(geoms.copy(), coords + offsets[index])


def outline_rows(predictions: Iterable, options: OutlineOptions | None = None) -> Iterator[tuple[int | None, list]]:
    """:func:`outline_tiles`' buildings, in the same order, grouped by tile row: yields
    ``(final_row, buildings)`` each time a new tile row begins, and ``(None, buildings)`` once at
    the end. When ``final_row`` is yielded every building with a part in a tile row above it
    (``y < final_row``) has been yielded: the rows the caller may finish its own work on. It is
    the new row, or the northernmost row of a building still open across it (a building is
    finished once the rows below it are passed)."""
    import rasterio

    opts = options or OutlineOptions()
    stitcher = Stitcher(opts)
    batch: list[Building] = []
    row = None
    with rasterio.Env():  # one GDAL environment for all the tiles' tracing
        for item in predictions:
            if isinstance(item, TilePieces):
                pieces = item
            else:
                (z, x, y), prediction = item
                pieces = tile_pieces(prediction, z, x, y, opts.head, threshold=opts.threshold,
                                     split_depth_m=opts.split_depth_m)
            if row is not None and pieces.y != row:
                open_from = stitcher.open_from_row()
                yield (pieces.y if open_from is None else min(open_from, pieces.y)), batch
                batch = []
            row = pieces.y
            batch.extend(stitcher.add(pieces))
    batch.extend(stitcher.finish())
    yield None, batch


def outline_tiles(predictions: Iterable, options: OutlineOptions | None = None) -> Iterator[Building]:
    """Buildings of a stream of ``((z, x, y), prediction)`` pairs in row-major order (y, then x),
    or of :class:`TilePieces` already computed. Yields each building when its tile row ends."""
    for _, buildings in outline_rows(predictions, options):
        yield from buildings


def count_by_tile(buildings: Iterable[Building]) -> Counter:
    """``building_count`` per tile: a Counter of (z, x, y) -> buildings whose ``tile`` it is."""
    return Counter(b.tile for b in buildings)

