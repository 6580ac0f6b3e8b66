"""Job outputs people read or look at: a summary, per-tile GeoJSON, and a map figure."""

from __future__ import annotations

import io
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from looking_glass.display import shown
from looking_glass.grid import TILE_SIZE, col_of_lon, ground_resolution_m, lat_of_row_edge, row_of_lat, tile_polygon
from looking_glass.imagery.status import TILE_STATUSES
from looking_glass.pipeline.store import json_value
from looking_glass.runtime.atomic import atomic_output, write_atomic

TILE_CMAP = "YlOrRd"  # pale yellow to dark red: every step stands out on green, grey and brown imagery
FILL_ALPHA = 0.08  # tiles' fill: a hint of the colour, the outline carries it (20% tinted grey imagery sepia)
OUTLINE_INSET = 0.03  # of a tile: each tile's outline inside its own square

# DynamoDB Decimals (and NumPy scalars) to int/float for JSON: the one rule, in the store module.
plain = json_value


def tile_counts(items: list[dict]) -> dict[str, int]:
    """Number of tile items per status, every status of ``TILE_STATUSES`` present."""
    counts = {s: 0 for s in TILE_STATUSES}
    for item in items:
        counts[item["status"]] += 1
    return counts


def results_geojson(items: list[dict], truth_m2: dict[str, float] | None = None) -> dict:
    """One Feature per tile (its square as a Polygon), ready for QGIS.

    ``truth_m2`` (quadkey -> reference building area in m2, see :mod:`looking_glass.results.truth`)
    adds a ``truth_area_m2`` property to every tile it names."""
    features = []
    for item in sorted(items, key=lambda i: i["quadkey"]):
        x, y, z = int(item["x"]), int(item["y"]), int(item["z"])
        props = {
            "quadkey": item["quadkey"],
            "z": z,
            "x": x,
            "y": y,
            "status": item["status"],
            "building_area_m2": plain(item.get("building_area_m2", 0)),
            "building_count": plain(item.get("building_count")),
        }
        if truth_m2 is not None and item["quadkey"] in truth_m2:
            props["truth_area_m2"] = round(float(truth_m2[item["quadkey"]]), 3)
        if item.get("valid_fraction") is not None:
            props["valid_fraction"] = plain(item["valid_fraction"])
        if item.get("capture_date"):
            props["capture_date"] = item["capture_date"]
        if item.get("reason"):
            props["reason"] = item["reason"]
        features.append({"type": "Feature", "geometry": tile_polygon(x, y, z), "properties": props})
    return {"type": "FeatureCollection", "features": features}


def write_json(path: Path, doc: dict) -> None:
    """Write ``doc`` (Decimals made plain) as indented JSON to ``path``."""
    write_atomic(path, json.dumps(plain(doc), indent=2) + "\n")


def summary_table(summary: dict) -> str:
    """The scalar entries of a summary as a boxed two-column text table; entries that are None
    (a figure that does not apply, e.g. ``truth_area_m2`` without a reference) are left out."""
    rows = [(k, _fmt(v)) for k, v in summary.items() if v is not None and not isinstance(v, (dict, list))]
    kw = max(len(k) for k, _ in rows)
    vw = max(len(v) for _, v in rows)
    line = f"+{'-' * (kw + 2)}+{'-' * (vw + 2)}+"
    return "\n".join([line, *(f"| {k:<{kw}} | {v:<{vw}} |" for k, v in rows), line])


def _fmt(v) -> str:
    v = plain(v)
    if isinstance(v, float):
        return f"{v:,.1f}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return str(v)


def fetch_mosaic(items: list[dict], source, thumb: int):
    """The imagery under the tiles of ``items`` (dicts with ``x``, ``y``, ``z``) as one RGB
    mosaic of ``thumb`` px per tile; ``source`` is an XYZ URL template or a fetcher
    ``(z, x, y) -> image bytes | None`` (:mod:`looking_glass.results.basemap`). Returns
    ``(mosaic, x0, y0, w, h)``: the (h*thumb, w*thumb, 3) uint8 image and its tile extent; a
    tile without imagery stays light grey."""
    from PIL import Image

    from looking_glass.results.basemap import http_fetcher

    fetch_tile = http_fetcher(source) if isinstance(source, str) else source
    xs = [int(i["x"]) for i in items]
    ys = [int(i["y"]) for i in items]
    x0, y0 = min(xs), min(ys)
    w, h = max(xs) - x0 + 1, max(ys) - y0 + 1
    mosaic = np.full((h * thumb, w * thumb, 3), 235, np.uint8)

    def fetch(item):
        x, y, z = int(item["x"]), int(item["y"]), int(item["z"])
        try:
            data = fetch_tile(z, x, y)
            if not data:
                return None
            img = Image.open(io.BytesIO(data)).convert("RGBA").resize((thumb, thumb), Image.BILINEAR)
            grey = Image.new("RGBA", img.size, (235, 235, 235, 255))
            return x, y, np.asarray(Image.alpha_composite(grey, img).convert("RGB"))
        except Exception:  # noqa: BLE001 - a missing background tile only leaves a grey square
            return None

    with ThreadPoolExecutor(8) as pool:
        for got in pool.map(fetch, items):
            if got:
                x, y, img = got
                mosaic[(y - y0) * thumb : (y - y0 + 1) * thumb, (x - x0) * thumb : (x - x0 + 1) * thumb] = img
    return mosaic, x0, y0, w, h


def tile_patch(x: float, y: float, colour, size: float = 1.0):
    """A coloured tile drawn over imagery without hiding it: an outline in ``colour``, set in by
    :data:`OUTLINE_INSET` of the tile so neighbours' outlines do not cover each other, and a fill
    of the same colour at :data:`FILL_ALPHA` (a pixel under it moves at most that fraction of
    the way to the colour: 8% is 20 DN at most, so greyscale imagery stays grey)."""
    from matplotlib.colors import to_rgba
    from matplotlib.patches import Rectangle

    d = OUTLINE_INSET * size
    return Rectangle((x + d, y + d), size - 2 * d, size - 2 * d, facecolor=to_rgba(colour, FILL_ALPHA),
                     edgecolor=to_rgba(colour, 1.0), lw=1.6)


def scale_bar(ax, width: float, height: float, cell_m: float) -> None:
    """A scale bar in the lower left of a map drawn in tile units (``cell_m`` metres per unit),
    about a third of ``width`` long: a white bar outlined in black and white text outlined in
    black, so it reads on dark and on light imagery alike."""
    from matplotlib import patheffects

    bar_m = next((m for m in (100_000, 50_000, 20_000, 10_000, 5000, 2000, 1000, 500, 200, 100, 50, 20, 10)
                  if m <= width * cell_m / 3), 10)
    x0, y = 0.3 * min(1.0, width / 3), height - 0.3 * min(1.0, height / 3)
    ax.plot([x0, x0 + bar_m / cell_m], [y, y], color="white", lw=4, solid_capstyle="butt",
            path_effects=[patheffects.withStroke(linewidth=6, foreground="black")])
    label = f"{bar_m:,} m" if bar_m < 1000 else f"{bar_m // 1000:,} km"
    ax.text(x0, y - 0.2 * min(1.0, height / 3), label, color="white", fontsize=9, fontweight="bold",
            path_effects=[patheffects.withStroke(linewidth=3, foreground="black")])


def draw_map(
    items: list[dict], url_template: str, out: Path, title: str, aoi=None, thumb: int = 64,
    truth_m2: dict[str, float] | None = None,
) -> None:
    """Tiles coloured by building area over the imagery, with legend, scale bar and AOI outline.

    With ``truth_m2`` (quadkey -> reference area in m2) a second panel beside it colours the same
    tiles by their reference area on the same colour scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import Normalize

    mosaic, x0, y0, w, h = fetch_mosaic(items, url_template, thumb)
    panels = [("model", {i["quadkey"]: float(i.get("building_area_m2", 0)) for i in items if i["status"] == "done"})]
    if truth_m2 is not None:
        panels.append(("reference footprints", {q: float(v) for q, v in truth_m2.items()}))
    cols = len(panels)
    if cols == 1:
        fig, axes = plt.subplots(1, 1, figsize=(9, 9 * h / max(w, 1) + 0.6), dpi=110, squeeze=False)
    else:
        fig, axes = plt.subplots(
            1, cols, figsize=(8 * cols + 1, 8 * h / max(w, 1) + 1.0), dpi=110, squeeze=False, layout="constrained"
        )
    values = [v for _, panel in panels for v in panel.values()]
    norm = Normalize(0, max(values) if values else 1)
    cmap = plt.get_cmap(TILE_CMAP)
    for ax, (name, areas) in zip(axes[0], panels):
        _area_panel(ax, mosaic, items, areas, norm, cmap, x0, y0, w, h, aoi)
        if cols > 1:
            total = sum(areas.get(i["quadkey"], 0.0) for i in items if i["status"] == "done")
            ax.set_title(f"{name}: {total:,.0f} m² on the done tiles", fontsize=10)
    sm = plt.cm.ScalarMappable(norm=norm, cmap=cmap)
    fig.colorbar(sm, ax=axes[0][0] if cols == 1 else list(axes[0]), fraction=0.035, pad=0.02,
                 label="building area per tile (m²)")
    if cols > 1:
        fig.suptitle(shown(title), fontsize=11, parse_math=False)  # a name is drawn as written
        for ax in axes[0]:
            ax.set_xlim(0, w)
            ax.set_ylim(h, 0)
            ax.set_xticks([])
            ax.set_yticks([])
        with atomic_output(out) as tmp:  # same suffix: matplotlib picks the format from it
            fig.savefig(tmp)
        plt.close(fig)
        return
    save_tile_figure(fig, axes[0][0], title, w, h, out)


def _area_panel(ax, mosaic, items, areas: dict, norm, cmap, x0: int, y0: int, w: int, h: int, aoi) -> None:
    """One map panel: imagery, tiles of ``areas`` (quadkey -> m2) coloured, tiles not done
    hatched, the AOI outline and a scale bar."""
    from matplotlib.patches import Rectangle

    ax.imshow(mosaic, extent=(0, w, h, 0))
    for item in items:
        x, y = int(item["x"]) - x0, int(item["y"]) - y0
        if item["status"] == "done" and item["quadkey"] in areas:
            ax.add_patch(tile_patch(x, y, cmap(norm(areas[item["quadkey"]]))))
        else:
            ax.add_patch(Rectangle((x, y), 1, 1, facecolor="none", edgecolor="cyan", hatch="xx", lw=0.5))
    if aoi is not None:
        z = int(items[0]["z"])
        for poly in getattr(aoi, "geoms", [aoi]):
            lon, lat = np.asarray(poly.exterior.coords).T
            tx = col_of_lon(lon, z) - x0
            ty = row_of_lat(lat, z) - y0
            ax.plot(tx, ty, color="white", lw=1.5)
    # Scale bar: metres per tile at the map's centre latitude.
    centre_lat = lat_of_row_edge(y0 + h / 2, int(items[0]["z"]))
    scale_bar(ax, w, h, ground_resolution_m(centre_lat, int(items[0]["z"])) * TILE_SIZE)


def save_tile_figure(fig, ax, title: str, width: int, height: int, out) -> None:
    """Finish a figure drawn in tile units (x right, y down, no ticks) and write it."""
    import matplotlib.pyplot as plt

    ax.set_title(shown(title), fontsize=10, parse_math=False)  # user text: no mathtext, escaped
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    ax.set_xticks([])
    ax.set_yticks([])
    fig.tight_layout()
    with atomic_output(out) as tmp:  # same suffix: matplotlib picks the format from it
        fig.savefig(tmp)
    plt.close(fig)
