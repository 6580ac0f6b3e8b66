"""``map JOB --compare MAPPED``: the mapping gap as a map layer, ``gap.html`` (self-contained
Leaflet, like ``map.html``) and ``gap.geojson``.

Tiles (or cells, or the ``--within`` polygons) are coloured by completeness (the share of the
predicted building area that mapped buildings cover, :func:`looking_glass.outlines.gap.completeness`):
red where nothing predicted is mapped, green where all of it is, grey outline where nothing was
predicted. On top, in red, the predicted buildings that no mapped
building touches: where to map next; in blue, the mapped footprints they were compared against
(up to :data:`MAX_MAPPED`, each in the tile of its centre), to check the reference itself (is it
the right area, is it offset from the imagery). Each layer can be switched off. A click shows a
row's numbers.
"""

from __future__ import annotations

import html
import json
import shutil
from pathlib import Path

import shapely

from looking_glass.display import shown
from looking_glass.outlines.exports import write_geojson
from looking_glass.outlines.gap import COMPLETENESS_MEANS
from looking_glass.results.gap import UNMAPPED_KEPT, JobGap, render_gap
from looking_glass.results.webmap import IMAGERY_JS, PAGE_HEAD, leaflet_assets, script_json
from looking_glass.runtime.atomic import write_atomic

__all__ = ["MAX_BUILDINGS", "MAX_MAPPED", "write_gap_map"]

MAX_BUILDINGS = UNMAPPED_KEPT  # unmapped buildings drawn on the page (all of them are in gap-buildings.geojson)
MAX_MAPPED = UNMAPPED_KEPT  # mapped footprints drawn on the page (job_gap's keep_mapped)
MAPPED_COLOUR = "#2b83ba"  # blue: apart from the completeness ramp and the red of "not yet mapped"
# completeness 0 -> 1: red -> amber -> green
RAMP = ["#d7191c", "#fdae61", "#ffffbf", "#a6d96a", "#1a9641"]

PAGE = PAGE_HEAD + """</style>
</head>
<body>
<div id="map"></div>
<script>{leaflet_js}</script>
<script>{imagery_js}</script>
<script>
"use strict";
const cells = {cells};
const buildings = {buildings};
const mappedFootprints = {mapped};
const options = {options};
function colourOf(c) {{
  if (c === null || c === undefined) return null;
  return options.ramp[Math.min(options.ramp.length - 1, Math.floor(c * options.ramp.length))];
}}
function escaped(v) {{ return String(v).replace(/[&<>]/g, function (c) {{ return {{ "&": "&amp;", "<": "&lt;", ">": "&gt;" }}[c]; }}); }}
const map = L.map("map", {{ maxZoom: 21, fadeAnimation: false }});
if (options.imagery) imageryLayer(options.imagery).addTo(map);  // as map.html's: webmap.IMAGERY_JS
const layer = L.geoJSON(cells, {{
  style: function (f) {{
    const c = f.properties.predicted_area_m2 > 0 ? colourOf(f.properties.completeness) : null;
    return c ? {{ color: c, weight: 0.5, fillColor: c, fillOpacity: 0.45 }} : {{ color: "#888", weight: 1, fillOpacity: 0 }};
  }},
  onEachFeature: function (f, l) {{
    l.bindPopup("<table>" + Object.entries(f.properties).map(function (kv) {{
      return "<tr><td>" + escaped(kv[0]) + "</td><td>" + escaped(kv[1] === null ? "" : kv[1]) + "</td></tr>"; }}).join("") + "</table>");
  }}
}}).addTo(map);
const mapped = L.geoJSON(mappedFootprints, {{ style: {{ color: options.mappedColour, weight: 1.5, fillOpacity: 0.1 }},
  interactive: false }}).addTo(map);
const unmapped = L.geoJSON(buildings, {{ style: {{ color: "#ff0000", weight: 2, fillOpacity: 0.2 }} }}).addTo(map);
L.control.layers(null, {{ "completeness": layer, "mapped (compared against)": mapped,
  "not yet mapped": unmapped }}, {{ collapsed: false }}).addTo(map);
map.fitBounds(layer.getBounds(), {{ padding: [20, 20] }});
L.control.scale({{ metric: true, imperial: false }}).addTo(map);
const legend = L.control({{ position: "bottomright" }});
legend.onAdd = function () {{
  const div = L.DomUtil.create("div", "lg-legend");
  let h = "<b>completeness</b> (" + options.means + ")<br>";
  for (let i = 0; i < options.ramp.length; i++) {{
    h += "<i style='background:" + options.ramp[i] + "'></i>" + (100 * i / options.ramp.length).toFixed(0) + " - "
      + (100 * (i + 1) / options.ramp.length).toFixed(0) + " %<br>";
  }}
  h += "<i style='border:2px solid #f00'></i>predicted, not yet mapped<br>";
  h += "<i style='border:2px solid " + options.mappedColour + "'></i>mapped (" + options.mappedNote + ")<br>" + options.summary;
  div.innerHTML = h;
  return div;
}};
legend.addTo(map);
window.lookingGlass = {{ features: layer.getLayers().length, buildings: unmapped.getLayers().length,
  mapped: mapped.getLayers().length, ready: true }};
</script>
</body>
</html>
"""


def write_gap_map(gap: JobGap, out_dir: Path, imagery: dict | None, title: str) -> dict:
    """Write ``gap.html``, ``gap.geojson`` (the rows) and ``gap-buildings.geojson`` (every
    predicted building not yet mapped: ``gap.unmapped_file`` when the gap wrote one, copied
    unless it is that file already, else ``gap.unmapped``) into ``out_dir`` (created); returns their paths and the
    numbers of rows, not-yet-mapped buildings (``unmapped``) and mapped footprints (``mapped``:
    ``gap.mapped``, kept by ``job_gap(keep_mapped=MAX_MAPPED)``) drawn. ``imagery``: the layer under the cells, as map.html's
    (:func:`looking_glass.results.webmap.page_imagery`: the tiles written beside the pages for a
    GeoTIFF or local source, or a provider's template), or None."""
    out_dir.mkdir(parents=True, exist_ok=True)
    cells = json.loads(render_gap("geojson", gap))
    write_atomic(out_dir / "gap.geojson", json.dumps(cells) + "\n")
    target = out_dir / "gap-buildings.geojson"
    if gap.unmapped_file is None:
        if len(gap.unmapped) < gap.unmapped_count:
            raise ValueError(f"the gap kept {len(gap.unmapped):,} of {gap.unmapped_count:,} buildings not yet mapped: "
                             "compute it with unmapped_out to have them all")
        write_geojson(gap.unmapped, target)
    elif Path(gap.unmapped_file).resolve() != target.resolve():
        shutil.copyfile(gap.unmapped_file, target)
    shown_buildings = gap.unmapped[:MAX_BUILDINGS]
    buildings = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": b.properties(), "geometry": shapely.geometry.mapping(b.polygon)}
        for b in shown_buildings]}
    mapped = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {}, "geometry": shapely.geometry.mapping(g)} for g in gap.mapped[:MAX_MAPPED]]}
    s = gap.summary
    drawn = len(mapped["features"])
    mapped_note = (f"all {drawn:,} in the compared tiles" if drawn >= s["mapped_count"]
                   else f"the first {drawn:,} of {s['mapped_count']:,} in the compared tiles")
    summary = (f"{s['predicted_count']:,} predicted, {s['mapped_count']:,} mapped buildings; "
               f"{gap.unmapped_count:,} not yet mapped; completeness {100 * s['completeness']:.1f} %")
    js, css = leaflet_assets()
    page = PAGE.format(title=html.escape(shown(title)), leaflet_css=css, leaflet_js=js, imagery_js=IMAGERY_JS, cells=script_json(cells),
                       buildings=script_json(buildings), mapped=script_json(mapped),
                       options=script_json({"ramp": RAMP, "imagery": imagery, "summary": html.escape(summary),
                                            "mappedColour": MAPPED_COLOUR, "mappedNote": mapped_note,
                                            "means": html.escape(COMPLETENESS_MEANS)}))
    write_atomic(out_dir / "gap.html", page)
    return {"html": str(out_dir / "gap.html"), "geojson": str(out_dir / "gap.geojson"),
            "buildings": str(out_dir / "gap-buildings.geojson"), "features": len(cells["features"]),
            "unmapped": len(shown_buildings), "mapped": drawn}
