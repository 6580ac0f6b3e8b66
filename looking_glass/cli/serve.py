"""``serve-synthetic`` and ``serve-tiles``: XYZ tile servers on this machine, for the embedded run
and for trying a GeoTIFF as imagery; ``aoi``: a GeoTIFF's footprint as an AOI."""

from __future__ import annotations

import signal
import time

from looking_glass.cli.common import non_negative_float, port
from looking_glass.runtime.parsing import KEY_EQUALS, Parsers


def _stop_on_signal(signum, frame) -> None:
    raise KeyboardInterrupt


def _serve_until_interrupted(server, ready: str, on_stop=lambda: None) -> None:
    # Ctrl-C (SIGINT) and `kill` (SIGTERM) both stop the server cleanly. SIGINT is set explicitly:
    # a process started in the background by a non-interactive shell (`cmd &`, nohup, some CI
    # runners) inherits SIGINT ignored, and Python then installs no KeyboardInterrupt handler.
    # The handlers go in before the `ready` line is printed: whoever waits for that line and then
    # signals (a script, a test) must never reach the default action (SIGTERM killed the process,
    # an ignored SIGINT left it serving; seen on a loaded machine).
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, _stop_on_signal)
        print(ready, flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()
        on_stop()


def cmd_serve_synthetic(args) -> int:
    """Serve the synthetic world as XYZ tiles until Ctrl-C."""
    from looking_glass.local.tileserver import SyntheticTileServer

    server = SyntheticTileServer(port=args.port, latency_s=args.latency_ms / 1000).start()
    _serve_until_interrupted(server, f"serving the synthetic world at {server.url_template} (Ctrl-C to stop)")
    return 0


def cmd_serve_tiles(args) -> int:
    """Serve a GeoTIFF/COG, or a mosaic of them, as web-mercator XYZ tiles until Ctrl-C."""
    from looking_glass.imagery.geotiff import GeoTiffError
    from looking_glass.imagery.mosaic import open_geotiff_source
    from looking_glass.local.tileserver import SyntheticTileServer
    from looking_glass.runtime.settings import SettingsError, validate_geotiff_source

    bands = Parsers(SettingsError, KEY_EQUALS).bands("--bands", args.bands)
    try:
        validate_geotiff_source(args.image)
    except SettingsError as exc:
        raise GeoTiffError(str(exc).replace("LG_IMAGERY_GEOTIFF=", "")) from None
    image = open_geotiff_source(args.image, bands=bands)
    server = SyntheticTileServer(
        port=args.port, latency_s=args.latency_ms / 1000, tile_source=lambda z, x, y: image.png(x, y, z)
    ).start()
    _serve_until_interrupted(server, f"serving {args.image} (bands {','.join(map(str, image.bands))}) at "
                             f"{server.url_template} (404 outside the image; Ctrl-C to stop)", image.close)
    return 0


def source_footprint(spec: str, bands=None, session=None):
    """The footprint of a GeoTIFF/COG or mosaic ``spec`` (local or s3://, read with ``session``)
    as a shapely geometry in lon/lat degrees (EPSG:4326). Raises GeoTiffError for a source that
    cannot be read."""
    from looking_glass.imagery.geotiff import GeoTiffError, lonlat_footprint
    from looking_glass.imagery.mosaic import open_geotiff_source
    from looking_glass.runtime.settings import SettingsError, validate_geotiff_source

    try:
        validate_geotiff_source(spec)
    except SettingsError as exc:
        raise GeoTiffError(str(exc).replace("LG_IMAGERY_GEOTIFF=", "")) from None
    with open_geotiff_source(spec, bands=bands, session=session) as image:
        return lonlat_footprint(image.outline)


def footprint_feature(spec: str, name: str | None = None, bands=None, session=None) -> dict:
    """The footprint of a GeoTIFF/COG or mosaic ``spec`` as a GeoJSON Feature in lon/lat (an AOI
    covering every tile with imagery), named ``name`` (default: the file's stem). Raises
    GeoTiffError for a source that cannot be read."""
    import shapely.geometry

    footprint = source_footprint(spec, bands=bands, session=session)
    stem = spec.split(",")[0].rstrip("/").rsplit("/", 1)[-1].rsplit(".", 1)[0] or "image"
    return {"type": "Feature", "properties": {"name": name or f"{stem}-footprint"},
            "geometry": shapely.geometry.mapping(footprint)}


def cmd_aoi(args) -> int:
    """Print the footprint of a GeoTIFF/COG or mosaic as AOI GeoJSON (lon/lat) on standard output."""
    import json

    print(json.dumps(footprint_feature(args.image, args.name)))
    return 0


def add_commands(sub) -> None:
    """Add ``serve-synthetic``, ``serve-tiles`` and ``aoi`` to the subcommand parsers ``sub``."""
    serve = sub.add_parser("serve-synthetic", help="serve the synthetic world as XYZ tiles")
    serve.add_argument("--port", type=port, default=8618)
    serve.add_argument("--latency-ms", type=non_negative_float, default=0.0)
    serve.set_defaults(func=cmd_serve_synthetic)
    tiles = sub.add_parser("serve-tiles", help="serve a GeoTIFF/COG or a mosaic as XYZ tiles (web mercator, 256 px)")
    tiles.add_argument("image", help="GeoTIFF or COG, local or s3://bucket/key.tif; or a mosaic: a.tif,b.tif, a .vrt, "
                       "or a MosaicJSON / STAC item collection (.json/.geojson); see docs/imagery.md")
    tiles.add_argument("--port", type=port, default=8619, help="port on 127.0.0.1 (0: any free port)")
    tiles.add_argument("--bands", help="1-based bands for R,G,B (e.g. 3,2,1; one band is grey)")
    tiles.add_argument("--latency-ms", type=non_negative_float, default=0.0)
    tiles.set_defaults(func=cmd_serve_tiles)
    aoi = sub.add_parser("aoi", help="print a GeoTIFF's (or a mosaic's) footprint as AOI GeoJSON: aoi IMAGE.tif > aoi.geojson")
    aoi.add_argument("image", help="GeoTIFF or COG (local or s3://), or a mosaic (a.tif,b.tif, .vrt, MosaicJSON, STAC items)")
    aoi.add_argument("--name", help="the AOI's name (default: '<file>-footprint': no space, a name easy to give on the command line)")
    aoi.set_defaults(func=cmd_aoi)
