"""``map.png``: a job's tiles over its imagery as a static figure, at the imagery's own detail.

The figure is laid out in pixels before anything is read: the map gets
:data:`NATIVE_PX` (256) pixels per zoom-18 tile, the imagery's own resolution, so every pixel of
the zoom-18 imagery is one pixel of the PNG; the long side of the map is kept between
:data:`MIN_MAP_PX` and :data:`MAX_MAP_PX` (a big job is drawn smaller, and the caption says
so). The imagery is then read at the zoom whose pixels are just finer than the map's
(:func:`imagery_zoom`): zoom 18 while the map shows a zoom-18 tile wider than 128 px, zoom 17
from 65 to 128 px, and so on, so the PNG is as sharp as its size allows without reading more
tiles than it can show (about 1,000 at most). Reading through the fetcher of
:mod:`looking_glass.results.basemap`, the coarser zooms come from the pyramid written beside the
page when there is one.

Tiles are outlined in the colour of their value with a faint fill (:data:`FILL_ALPHA`), so the
imagery underneath keeps its colours; the caption under the map names the imagery, its
attribution and capture dates, the model and how many of the job's tiles are done.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

from looking_glass.grid import TILE_SIZE, ZOOM, ground_resolution_m, lat_of_row_edge
from looking_glass.results.figures import TILE_CMAP, fetch_mosaic, scale_bar, tile_patch
from looking_glass.runtime.atomic import atomic_output

__all__ = ["DPI", "MAX_IMAGERY_TILES", "MAX_MAP_PX", "MIN_MAP_PX", "NATIVE_PX", "imagery_zoom", "map_caption",
           "write_png"]

DPI = 100
NATIVE_PX = TILE_SIZE  # PNG pixels per zoom-18 tile: one per imagery pixel
MAX_MAP_PX = 4096  # long side of the map in a big job's PNG (a 16x16-tile job is drawn at full detail)
MIN_MAP_PX = 800  # long side of a small job's map (a one-tile job is not a thumbnail)
MAX_IMAGERY_TILES = 2048  # imagery tiles read for one PNG at most (the zoom choice keeps it near 1,000)
NO_RESULT = "no done tile (failed, no imagery, skipped)"
# Inches around the map: title above, colour bar right, caption below.
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 0.25, 1.5, 0.5, 0.8
MIN_FIG_WIDTH = 9.0


def imagery_zoom(px_per_cell: float, z: int) -> int:
    """The zoom to read imagery at for cells of zoom ``z`` drawn ``px_per_cell`` px wide: the
    coarsest whose 256-px tiles give each cell at least ``px_per_cell`` px, at most zoom 18
    (the imagery's own) and at least 0."""
    finer = math.ceil(math.log2(max(px_per_cell, 1e-9) / TILE_SIZE) - 1e-9)
    return max(0, min(ZOOM, z + finer))


def _map_px_per_cell(w: int, h: int, z: int) -> tuple[float, bool]:
    """Pixels per cell of a ``w`` x ``h``-cell map of zoom ``z``, and whether the cap made it
    smaller than the imagery's own resolution."""
    native = NATIVE_PX * 2 ** (ZOOM - z)
    long_side = max(w, h) * native
    if long_side > MAX_MAP_PX:
        return MAX_MAP_PX / max(w, h), True
    return max(native, MIN_MAP_PX / max(w, h)), False


def _imagery_cells(rows: list[dict], z: int, zr: int) -> list[dict]:
    """The zoom-``zr`` tiles (as ``x``, ``y``, ``z`` dicts) that hold the cells of ``rows``."""
    tiles: set[tuple[int, int]] = set()
    for r in rows:
        x, y = int(r["x"]), int(r["y"])
        if zr >= z:
            f = 2 ** (zr - z)
            tiles.update((x * f + i, y * f + j) for i in range(f) for j in range(f))
        else:
            k = 2 ** (z - zr)
            tiles.add((x // k, y // k))
    return [{"x": x, "y": y, "z": zr} for x, y in sorted(tiles)]


def map_caption(job: dict, tot: dict, rows: list[dict], imagery_name: str | None, attribution: str) -> str:
    """The lines under the map: imagery (``imagery_name``, ``attribution``) and its capture
    dates (the range of the rows' ``capture_date``), the model (``tot["model"]``), the job's
    done/total tiles (``tot``, :func:`looking_glass.results.query.totals`), the imagery's
    coverage of the done tiles (their mean ``valid_fraction``, tile rows only); ``imagery_name``
    None: the job's recorded source name."""
    dates = sorted({d for r in rows for d in str(r.get("capture_date") or "").split(",") if d})
    captured = ("capture date not recorded" if not dates else f"captured {dates[0]}" if len(dates) == 1
                else f"captured {dates[0]} to {dates[-1]}")
    name = imagery_name or (job.get("imagery") if isinstance(job.get("imagery"), str) else "") or ""
    imagery = "; ".join(p for p in (name, attribution if attribution != name else "") if p) or "not recorded"
    done, total = int(tot.get("tiles_done") or 0), int(tot.get("job_tiles_total") or 0)
    fractions = [float(r["valid_fraction"]) for r in rows
                 if r.get("status") == "done" and r.get("valid_fraction") is not None]
    coverage = f"; imagery over {100 * sum(fractions) / len(fractions):.0f}% of their ground" if fractions else ""
    tiles = (f"{done:,} of {total:,} tiles done (failed {int(tot.get('tiles_failed') or 0):,}, no imagery "
             f"{int(tot.get('tiles_no_imagery') or 0):,}, skipped {int(tot.get('tiles_skipped') or 0):,}, pending "
             f"{int(tot.get('job_tiles_pending') or 0):,}){coverage}")
    lines = [f"imagery: {imagery}; {captured}", f"model: {tot.get('model') or 'not recorded'}; {tiles}"]
    return "\n".join(textwrap.fill(line, 150) for line in lines)


def write_png(rows: list[dict], out: Path, imagery, title: str, values: list[float | None], colour_label: str,
              caption: str = "") -> dict:
    """Draw ``rows`` (tiles or rolled-up cells: ``x``, ``y``, ``z``, one zoom) coloured by
    ``values`` (one per row; None: no done tile, hatched) over ``imagery`` (a fetcher ``(z, x,
    y) -> image bytes | None`` or an XYZ template, :mod:`looking_glass.results.basemap`; None:
    a grey background), with a colour bar labelled ``colour_label``, a scale bar and
    ``caption`` (:func:`map_caption`) under the map, to ``out``. Returns the layout:
    ``px_per_cell``, ``imagery_zoom`` (None without imagery), ``capped`` (the map drawn coarser
    than zoom 18 to keep it under :data:`MAX_MAP_PX`), ``map_box`` (left, top, right, bottom
    of the map in PNG pixels), ``legend`` (its entries) and ``caption`` (as drawn, with a last line
    saying how the imagery was read). Raises ValueError for no rows, or ``values`` not one per row
    (a caller's mistake: :func:`looking_glass.results.webmap.make_map` refuses a job without rows)."""
    if not rows or len(values) != len(rows):
        raise ValueError(f"map.png: {len(rows)} rows and {len(values)} values: one value per row, at least one row")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import Normalize
    from matplotlib.patches import Patch, Rectangle

    from looking_glass.display import shown

    z = int(rows[0]["z"])
    xs, ys = [int(r["x"]) for r in rows], [int(r["y"]) for r in rows]
    x0, y0 = min(xs), min(ys)
    w, h = max(xs) - x0 + 1, max(ys) - y0 + 1
    px, capped = _map_px_per_cell(w, h, z)
    map_w, map_h = w * px / DPI, h * px / DPI  # inches
    fig_w = max(MIN_FIG_WIDTH, MARGIN_LEFT + map_w + MARGIN_RIGHT)
    fig_h = MARGIN_TOP + map_h + MARGIN_BOTTOM
    left = MARGIN_LEFT + (fig_w - MARGIN_RIGHT - MARGIN_LEFT - map_w) / 2
    fig = plt.figure(figsize=(fig_w, fig_h), dpi=DPI)
    ax = fig.add_axes((left / fig_w, MARGIN_BOTTOM / fig_h, map_w / fig_w, map_h / fig_h))
    zr = None
    if imagery:
        zr = imagery_zoom(px, z)
        cells = _imagery_cells(rows, z, zr)
        if len(cells) <= MAX_IMAGERY_TILES:
            f = 2.0 ** (zr - z)  # imagery tiles per cell, per axis
            mosaic, mx0, my0, mw, mh = fetch_mosaic(cells, imagery, min(TILE_SIZE, math.ceil(px / f)))
            ax.imshow(mosaic, extent=(mx0 / f - x0, (mx0 + mw) / f - x0, (my0 + mh) / f - y0, my0 / f - y0),
                      interpolation="lanczos")  # ~1:1: keeps the detail
        else:
            zr = None
    if zr is None:
        ax.set_facecolor("#e8e8e8")
        note = f"no imagery drawn (none given, or more than {MAX_IMAGERY_TILES:,} tiles to read): grey background"
    else:
        cell = "tile" if z == ZOOM else "cell"
        note = f"imagery read at zoom {zr}, drawn at {px:,.0f} px per zoom-{z} {cell}"
        if capped:  # say so: a reader would otherwise take the blur for the imagery's
            note += (f" (the map is capped at {MAX_MAP_PX:,} px, so coarser than the zoom-18 imagery; "
                     "map.html shows it all)")
    caption = f"{caption}\n{note}" if caption else note
    known = [v for v in values if v is not None]
    norm = Normalize(0, max(known) if known and max(known) > 0 else 1)
    cmap = plt.get_cmap(TILE_CMAP)
    for v, x, y in zip(values, xs, ys):
        if v is None:
            ax.add_patch(Rectangle((x - x0, y - y0), 1, 1, facecolor="none", edgecolor="cyan", hatch="xx", lw=0.5))
        else:
            ax.add_patch(tile_patch(x - x0, y - y0, cmap(norm(v))))
    scale_bar(ax, w, h, ground_resolution_m(lat_of_row_edge(y0 + h / 2, z), z) * TILE_SIZE)
    cax = fig.add_axes(((left + map_w + 0.2) / fig_w, MARGIN_BOTTOM / fig_h, 0.18 / fig_w, map_h / fig_h))
    fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), cax=cax, label=colour_label)
    legend = [NO_RESULT] if len(known) < len(values) else []
    if legend:  # only when a tile has no done result: an entry for nothing is noise
        ax.legend(handles=[Patch(facecolor="none", edgecolor="cyan", hatch="xx", label=NO_RESULT)],
                  loc="upper right", fontsize=8)
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)
    ax.set_xticks([])
    ax.set_yticks([])
    fig.text(0.5, 1 - 0.15 / fig_h, shown(title), ha="center", va="top", fontsize=10, parse_math=False)
    shown_caption = "\n".join(shown(line) for line in caption.split("\n"))  # user text (names, credits)
    fig.text(MARGIN_LEFT / fig_w, (MARGIN_BOTTOM - 0.1) / fig_h, shown_caption, ha="left", va="top", fontsize=7.5,
             parse_math=False)
    with atomic_output(out) as tmp:  # same suffix: matplotlib picks the format from it
        fig.savefig(tmp, dpi=DPI)
    plt.close(fig)
    top = round(MARGIN_TOP * DPI)
    return {"px_per_cell": px, "imagery_zoom": zr, "capped": capped, "legend": legend, "caption": caption,
            "map_box": (round(left * DPI), top, round((left + map_w) * DPI), top + round(map_h * DPI))}
