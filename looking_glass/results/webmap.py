"""``looking-glass map``: a PNG figure and a self-contained HTML map of a job's results.

The HTML page inlines Leaflet (1.9.4, BSD-2-Clause: its ``dist`` files and LICENSE ship as
package data in ``looking_glass/results/static/leaflet``, read with ``importlib.resources``, so
no ``npm ci`` is needed) with its stylesheet and images, and the results as GeoJSON. The imagery
under the tiles (:mod:`looking_glass.results.basemap`) is either written beside the page
(``map_tiles/``, for GeoTIFF/COG sources and the embedded run's local tile server: the page then
works from ``file://``, offline) or, for a provider's server elsewhere, asked of it at view
time. Tiles are outlined in a colour for their building density (building area over the ground
area of the done tiles) or area, with a faint fill, so the imagery stays visible; a click shows
a tile's numbers. Large jobs are rolled up to a coarser zoom so that the page holds at most
``MAX_FEATURES`` features.
"""

from __future__ import annotations

import base64
import html
import json
import re
from importlib import resources
from pathlib import Path

from looking_glass.display import shown
from looking_glass.errors import EXIT_BAD_INPUT, LookingGlassError
from looking_glass.grid import ZOOM, tile_from_quadkey
from looking_glass.pipeline.store import ResultsStore
from looking_glass.results.basemap import MAX_BASEMAP_TILES, TILES_DIR, source_fetcher, wants_files, write_basemap
from looking_glass.results.mappng import map_caption, write_png
from looking_glass.results.query import ResultsError, geojson_doc, query
from looking_glass.runtime.atomic import write_atomic
from looking_glass.runtime.imagery_sources import ImagerySource

# Leaflet's dist files (leaflet.js, leaflet.css, images/), package data of this package.
LEAFLET_DIR = resources.files("looking_glass.results") / "static" / "leaflet"
MAX_FEATURES = 20_000
COLOUR_BY = ("density", "area")
# The page's steps of the PNG's colour map (figures.TILE_CMAP, YlOrRd), low to high.
RAMP = ["#ffffb2", "#fed976", "#feb24c", "#fd8d3c", "#f03b20", "#bd0026"]
ROLLUP_FIELDS = ("quadkey", "status", "building_area_m2", "building_count", "valid_fraction", "capture_date")


class MapError(LookingGlassError, RuntimeError):
    """The map cannot be made: an unknown ``colour_by``, or a job without tile results yet."""


def map_rows(store: ResultsStore, job_id: str, zoom: int | None = None, max_features: int = MAX_FEATURES,
             threads: int = 4):
    """Rows to draw: per tile if the job is small enough, else rolled up to the finest zoom
    that stays under ``max_features`` (or the ``zoom`` asked for)."""
    if zoom is not None:
        mode, rows, tot = query(store, job_id, zoom=zoom, threads=threads)
        return mode, rows, tot
    mode, rows, tot = query(store, job_id, threads=threads)
    if len(rows) <= max_features:
        return mode, rows, tot
    from looking_glass.results.query import rollup_rows, totals

    z = ZOOM
    while z > 0:
        z -= 1
        rolled = rollup_rows(_as_items(rows), z)
        if len(rolled) <= max_features:
            return "zoom", rolled, totals(rolled, store.get_job(job_id))
    raise ResultsError("cannot roll the job up to few enough features")  # pragma: no cover - z0 is one row


def _as_items(tile_rows: list[dict]) -> list[dict]:
    """Per-tile rows as the tile items a rollup sums (count, coverage and dates included)."""
    return [{k: r.get(k) for k in ROLLUP_FIELDS} for r in tile_rows]


def _value(row: dict, colour_by: str) -> float | None:
    if colour_by == "area":
        return float(row["building_area_m2"]) if row["tiles_done"] else None
    return row["building_density"]


# ---- HTML ---------------------------------------------------------------------------------------
def leaflet_assets() -> tuple[str, str]:
    """Leaflet's JavaScript and its stylesheet with the images inlined as data URIs."""
    js, css = LEAFLET_DIR / "leaflet.js", LEAFLET_DIR / "leaflet.css"
    if not js.is_file() or not css.is_file():
        raise MapError(
            f"Leaflet not found in {LEAFLET_DIR}: this install of looking-glass lacks its package data "
            "(looking_glass/results/static/leaflet); reinstall it (it no longer needs `npm ci`)"
        )

    def inline(match: re.Match) -> str:
        image = LEAFLET_DIR / match.group(1)
        data = base64.b64encode(image.read_bytes()).decode() if image.is_file() else ""
        return f'url("data:image/png;base64,{data}")'

    return js.read_text(), re.sub(r"url\((images/[A-Za-z0-9_.-]+\.png)\)", inline, css.read_text())


def script_json(doc) -> str:
    """``doc`` as compact JSON safe inside an inline <script> (no ``</`` to end it early)."""
    return json.dumps(doc, separators=(",", ":")).replace("</", "<\\/")


# The start of every Leaflet page written here (map.html, gap.html): Leaflet inlined and the
# styles they share; each page adds its own styles, closes </style> and continues.
PAGE_HEAD = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{leaflet_css}</style>
<style>
html, body {{ height: 100%; margin: 0; font: 13px/1.4 system-ui, sans-serif; }}
#map {{ position: absolute; top: 0; bottom: 0; left: 0; right: 0; }}
.lg-legend {{ background: rgba(255,255,255,0.9); padding: 6px 8px; border-radius: 4px; }}
.lg-legend i {{ display: inline-block; width: 14px; height: 10px; margin-right: 4px; }}
"""

# The imagery layer of every page written here (map.html, gap.html): one definition, so both ask
# for the same tiles. ``im`` is :func:`page_imagery`'s dict. With ``available`` (files written
# beside the page, :func:`looking_glass.results.basemap.write_basemap`) only those files are
# asked for (a view wider than the job needs no 404s, nor ERR_FILE_NOT_FOUND from file://), each
# zoom between ``minNativeZoom`` and ``maxNativeZoom`` from its own level, scaled outside them.
IMAGERY_JS = """
function imageryLayer(im) {
  let Layer = L.TileLayer;
  if (im.available) {
    const available = new Set(im.available);
    Layer = L.TileLayer.extend({
      createTile: function (coords, done) {
        if (available.has(coords.z + "/" + coords.x + "/" + coords.y)) {
          return L.TileLayer.prototype.createTile.call(this, coords, done);
        }
        const empty = document.createElement("div");
        setTimeout(function () { done(null, empty); }, 0);
        return empty;
      }
    });
  }
  return new Layer(im.template, { minNativeZoom: im.minNativeZoom, maxNativeZoom: im.maxNativeZoom, maxZoom: 21,
                                  attribution: im.attribution });
}
"""

PAGE = PAGE_HEAD + """.lg-popup td {{ padding: 0 6px 0 0; }}
.leaflet-control-scale-line {{ background: rgba(255,255,255,0.9); color: #111; border-color: #111; font-weight: 600; }}
</style>
</head>
<body>
<div id="map"></div>
<script>{leaflet_js}</script>
<script>{imagery_js}</script>
<script>
"use strict";
const results = {results};
const options = {options};
const ramp = {ramp};
function valueOf(p) {{
  if (options.colourBy === "area") return p.tiles_done > 0 ? p.building_area_m2 : null;
  return p.building_density;
}}
function colourOf(v) {{
  if (v === null || v === undefined) return null;
  const t = options.max > 0 ? Math.min(1, Math.max(0, v / options.max)) : 0;
  return ramp[Math.min(ramp.length - 1, Math.floor(t * ramp.length))];
}}
const map = L.map("map", {{ preferCanvas: false, maxZoom: 21, fadeAnimation: false }});
if (options.imagery) imageryLayer(options.imagery).addTo(map);
const layer = L.geoJSON(results, {{
  style: function (f) {{
    const c = colourOf(valueOf(f.properties));
    // An outline in the row's colour and a faint fill: the imagery stays visible under it. A tile
    // partly outside the imagery (valid_fraction < 1) is outlined in dashes.
    const partial = typeof f.properties.valid_fraction === "number" && f.properties.valid_fraction < 0.999;
    return c ? {{ color: c, weight: 1.5, opacity: 0.95, fillColor: c, fillOpacity: 0.15, className: "lg-tile",
                  dashArray: partial ? "6 4" : null }}
             : {{ color: "#00e5ff", weight: 1, dashArray: "3", fillOpacity: 0.03, className: "lg-tile" }};
  }},
  onEachFeature: function (f, l) {{
    const rows = Object.entries(f.properties)
      .filter(function (kv) {{ return kv[1] !== null && kv[1] !== ""; }})
      .map(function (kv) {{
        return "<tr><td>" + kv[0] + "</td><td>" + String(kv[1]).replace(/[&<>]/g, function (c) {{
          return {{ "&": "&amp;", "<": "&lt;", ">": "&gt;" }}[c]; }}) + "</td></tr>";
      }});
    l.bindPopup("<table class='lg-popup'>" + rows.join("") + "</table>");
  }}
}}).addTo(map);
map.fitBounds(layer.getBounds(), {{ padding: [20, 20] }});
L.control.scale({{ metric: true, imperial: false }}).addTo(map);
const legend = L.control({{ position: "bottomright" }});
legend.onAdd = function () {{
  const div = L.DomUtil.create("div", "lg-legend");
  let h = "<b>" + options.legendTitle + "</b><br>";
  for (let i = 0; i < ramp.length; i++) {{
    const lo = options.max * i / ramp.length, hi = options.max * (i + 1) / ramp.length;
    h += "<i style='border:2px solid " + ramp[i] + ";background:" + ramp[i] + "40'></i>" + options.fmt(lo) + " - " + options.fmt(hi) + "<br>";
  }}
  if (options.notDone) h += "<i style='border:1px dashed #00e5ff'></i>no done tile<br>";
  if (options.partial) h += "<i style='border:2px dashed #888'></i>partly without imagery (density over the part with it)<br>";
  h += options.summary;
  div.innerHTML = h;
  return div;
}};
options.fmt = function (v) {{ return options.colourBy === "area" ? Math.round(v).toLocaleString() + " m²" : (100 * v).toFixed(2) + " %"; }};
legend.addTo(map);
window.lookingGlass = {{ features: layer.getLayers().length, ready: true }};
document.body.setAttribute("data-features", String(layer.getLayers().length));
</script>
</body>
</html>
"""


def write_html(mode: str, rows: list[dict], tot: dict, job_id: str, out: Path, imagery: dict | None,
               title: str, colour_by: str = "density") -> int:
    """The self-contained page; returns the number of features on it. ``imagery`` is the page's
    background (:func:`page_imagery`), or None for none."""
    js, css = leaflet_assets()
    doc = geojson_doc(mode, rows, tot, job_id)
    every = [_value(r, colour_by) for r in rows]
    values = [v for v in every if v is not None]
    summary = (
        f"{tot['job_tiles_total'] - tot['job_tiles_pending']:,}/{tot['job_tiles_total']:,} tiles final; "
        f"done {tot['tiles_done']:,}, failed {tot['tiles_failed']:,}, no imagery {tot['tiles_no_imagery']:,}, "
        f"skipped {tot['tiles_skipped']:,}<br>building area {float(tot['building_area_m2']):,.0f} m²"
    )
    options = {
        "colourBy": colour_by,
        "max": max(values) if values else 1,
        "imagery": imagery,
        "legendTitle": "building density" if colour_by == "density" else "building area",
        "notDone": len(values) < len(every),  # the legend's "no done tile" only when there is one
        "partial": any(r.get("valid_fraction") is not None and float(r["valid_fraction"]) < 0.999 for r in rows),
        "summary": summary,
    }
    page = PAGE.format(
        title=html.escape(shown(title)),
        leaflet_css=css,
        leaflet_js=js,
        results=script_json(json.loads(json.dumps(doc, default=float))),
        options=script_json(options),
        ramp=script_json(RAMP),
        imagery_js=IMAGERY_JS,
    )
    write_atomic(out, page)
    return len(doc["features"])


def page_imagery(source: str | None, basemap: dict | None, attribution: str = "") -> dict | None:
    """The page's imagery layer: the tiles written beside it (``basemap``, from
    :func:`looking_glass.results.basemap.write_basemap`), else the template ``source`` asked at view
    time (zoom 18 scaled above it), else None (a file source whose tiles were not written); its
    ``attribution`` is the text the map credits (``ImagerySource.credit``), escaped."""
    if basemap is not None:
        return {"template": basemap["template"], "available": basemap["available"],
                "minNativeZoom": basemap["min_zoom"], "maxNativeZoom": basemap["max_zoom"],
                "attribution": html.escape(attribution)}
    if source and not wants_files(source):
        return {"template": source, "available": None, "minNativeZoom": 0, "maxNativeZoom": ZOOM,
                "attribution": html.escape(attribution)}
    return None


def _zoom18_tiles(store: ResultsStore, job_id: str, mode: str, rows: list[dict], threads: int) -> list[tuple[int, int]]:
    """The job's zoom-18 tiles (x, y): the rows themselves per tile, else read again."""
    if mode == "tile":
        return [(int(r["x"]), int(r["y"])) for r in rows]
    from looking_glass.results.query import fetch_tiles

    return [tile_from_quadkey(i["quadkey"])[:2] for i in fetch_tiles(store, job_id, threads=threads)]


def _files_fetcher(out_dir: Path, fetch):
    """Read zoom-18 tiles back from the written basemap (the PNG's imagery), else from ``fetch``."""
    def read(z: int, x: int, y: int):
        path = out_dir / TILES_DIR / str(z) / str(x) / f"{y}.webp"
        return path.read_bytes() if path.is_file() else fetch(z, x, y)

    return read


def make_map(store: ResultsStore, job_id: str, out_dir: Path, imagery: str | None, zoom: int | None = None,
             colour_by: str = "density", max_features: int = MAX_FEATURES, threads: int = 4,
             session=None, bands: tuple[int, ...] | None = None, attribution: str | None = None,
             imagery_name: str | None = None) -> dict:
    """Write ``map.png`` and ``map.html`` of job ``job_id`` into ``out_dir`` (created): buildings per
    tile, or per coarser cell when rolled up (:func:`map_rows`), coloured by ``colour_by`` (one of
    :data:`COLOUR_BY`) over ``imagery`` when given: an XYZ template or a GeoTIFF/COG/mosaic
    (``s3://`` read with the boto3 ``session``; ``bands``: the job's GeoTIFF bands, as its workers
    read them; ``attribution``: what the page credits, default the source's own credit,
    ``ImagerySource.credit``; ``imagery_name``: its registered name for map.png's caption,
    default the job's), drawn as :mod:`looking_glass.results.basemap`
    says (tiles written to ``out_dir/map_tiles`` for file and local sources). Returns the two
    paths, the number of features drawn, the zoom of the cells, the imagery tiles written,
    map.png's layout (``png_layout``: :func:`looking_glass.results.mappng.write_png`'s),
    whether the page shows imagery (false for a file source over the cap or without imagery) and
    the page's imagery layer (:func:`page_imagery`; for other pages in ``out_dir``, e.g. gap.html).
    Raises :class:`MapError`, and :class:`~looking_glass.results.basemap.BasemapError` for an
    imagery source that cannot be opened."""
    if colour_by not in COLOUR_BY:
        raise MapError(f"--colour {colour_by!r}: one of {', '.join(COLOUR_BY)}", exit_code=EXIT_BAD_INPUT)
    mode, rows, tot = map_rows(store, job_id, zoom, max_features, threads)
    if not rows:
        raise MapError(f"job {job_id} has no tile results yet: nothing to map")
    out_dir.mkdir(parents=True, exist_ok=True)
    job = store.get_job(job_id) or {}
    z = int(rows[0]["z"])
    title = f"{job.get('name', job_id)} ({job_id[:8]}): building {colour_by} per zoom-{z} {'tile' if z == ZOOM else 'cell'}"
    png, page = out_dir / "map.png", out_dir / "map.html"
    fetch, basemap = (source_fetcher(imagery, session, bands) if imagery else None), None
    # Files for GeoTIFF and local sources, within the cap (the job's tile count: no second read of
    # a large job's tiles only to find it is over).
    if fetch is not None and wants_files(imagery) and int(tot.get("job_tiles_total") or 0) <= MAX_BASEMAP_TILES:
        basemap = write_basemap(out_dir, _zoom18_tiles(store, job_id, mode, rows, threads), fetch)
        if basemap is not None:
            fetch = _files_fetcher(out_dir, fetch)
    if attribution is None:
        attribution = ImagerySource("", imagery).credit() if imagery else ""
    label = "building density (building area / ground area of done tiles)" if colour_by == "density" \
        else "building area per cell (m²)"
    caption = map_caption(job, tot, rows, imagery_name, attribution)
    drawn = write_png(rows, png, fetch, title, [_value(r, colour_by) for r in rows], label, caption)
    layer = page_imagery(imagery, basemap, attribution)
    features = write_html(mode, rows, tot, job_id, page, layer, title, colour_by)
    return {"png": str(png), "html": str(page), "features": features, "zoom": z,
            "imagery_tiles": basemap["written"] if basemap else 0,
            "imagery_shown": basemap is not None or bool(imagery and not wants_files(imagery)),
            "imagery_layer": layer, "png_layout": drawn}
