"""Building outlines from tile predictions, and what they are compared with.

One job per module; everything works on the zoom-18 web-mercator XYZ grid of
:mod:`looking_glass.grid`:

- :mod:`.instances`: a tile's prediction -> a label image of building instances (binary head:
  connected regions; signed-distance head: watershed from the distance peaks, so touching
  buildings with a neck between them come out separate);
- :mod:`.vectorize`: a label image -> :class:`~.vectorize.TilePieces`, the tile's raw pixel-edge
  polygons in *world pixel* coordinates plus the labels along its four edges (what stitching needs);
- :mod:`.georef`: world pixels <-> lon/lat, metres per pixel, latitude-correct areas, RFC 7946
  ring orientation;
- :mod:`.shapes`: simplification and regularisation (right angles on the dominant orientation);
- :mod:`.stitch`: a streaming, row-by-row stitcher that joins pieces cut by tile edges into one
  building and emits finished :class:`~.stitch.Building` records with bounded memory;
- :mod:`.exports`: GeoJSON, GeoPackage / FlatGeobuf (pyogrio) and JOSM-ready ``.osm`` XML;
- :mod:`.layers`: reading polygon layers in any declared CRS (GeoJSON incl. the legacy ``crs``
  member, anything GDAL reads, OpenStreetMap ``.osm.pbf``/``.osm`` via pyosmium), invalid
  geometries reported and skipped;
- :mod:`.evaluate`: object-level evaluation with the SpaceNet matching rule in a metric CRS;
- :mod:`.gap`: the mapping gap per tile (predicted vs mapped buildings, completeness, priority);
- :mod:`.reference`: the mapped buildings read one extent (band) at a time.

Typical flow: a worker stores each tile's mask and its ``building_count(pred, z, x, y, head)``
(:mod:`.vectorize`; summed over the job it is the number of buildings exported); ``looking-glass
export`` streams the job's masks in row-major order through ``outline_tiles`` (or a
:class:`~.stitch.Stitcher`) into ``write_buildings``; ``evaluate_tiles`` scores tiles against truth
masks, ``evaluate_polygons`` and ``compare_files`` / ``mapping_gap`` work on files or polygons.

Errors meant for the user are :class:`~.errors.OutlinesError` (a ``LookingGlassError``).
"""
