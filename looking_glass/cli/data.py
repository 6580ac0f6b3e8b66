"""``prepare`` and ``synth-data``: training chips from GeoTIFFs and footprints, or from the
synthetic world."""

from __future__ import annotations

from looking_glass.cli.common import (
    CommandError,
    fraction,
    non_negative_int,
    output_folder,
    positive_float,
    positive_int,
)


def cmd_prepare(args) -> int:
    """Cut GeoTIFFs (or an imagery source's tiles over an AOI) and GeoJSON footprints into
    training chips (shards + manifest.json)."""
    from looking_glass.datasets.prepare import PrepareConfig, prepare

    if bool(args.images) == bool(args.imagery):
        raise CommandError("give either --images (GeoTIFFs) or --imagery SOURCE with --aoi, not both or neither")
    if args.imagery and not args.aoi:
        raise CommandError("--imagery needs --aoi AOI.geojson: a tile source has no extent of its own")
    if args.aoi and not args.imagery:
        raise CommandError("--aoi applies to --imagery only (GeoTIFFs are chipped wherever they have data)")
    if args.imagery and args.mode == "native":
        raise CommandError("chips from --imagery are the zoom-18 tiles: leave --mode out or give --mode tiles")
    try:
        bands = tuple(int(b) for b in args.bands.split(",")) if args.bands else None
    except ValueError:
        raise CommandError(f"--bands {args.bands!r} must be comma-separated band numbers, e.g. 1,2,3") from None
    config = PrepareConfig(
        chip_size=args.chip_size, mode=args.mode or ("tiles" if args.imagery else "native"), stride=args.stride,
        bands=None if args.imagery else bands, sdt_clip_m=args.sdt_clip,
        max_nodata_fraction=args.max_nodata, val_fraction=args.val_fraction,
        split_block=args.split_block, seed=args.seed,
    )
    with _ProgressBar() as bar:
        if args.imagery:
            manifest = _prepare_from_imagery(args, config, bar)
        else:
            manifest = prepare(args.images, args.footprints, args.out, config, overwrite=args.overwrite,
                               log=bar.write, jobs=args.jobs, progress=bar.update)
    counts = manifest["counts"]
    print(f"wrote {counts['train']} train and {counts['validation']} validation chips to {args.out} "
          f"({counts.get('dropped_nodata', 0)} dropped for nodata), {manifest['split_summary']}; "
          f"manifest: {args.out}/manifest.json")
    # The warnings were printed as they came (the log); the manifest keeps them ("warnings").
    return 0


def _prepare_from_imagery(args, config, bar) -> dict:
    """``prepare --imagery SOURCE --aoi AOI``: the source opened as the workers open it (XYZ
    template with the token settings of this environment, or a GeoTIFF/mosaic), probed once."""
    import os

    from looking_glass.cli.common import read_aoi
    from looking_glass.datasets.from_tiles import prepare_from_source
    from looking_glass.imagery.xyz import ImagerySourceError, open_imagery
    from looking_glass.local.inputs import probe_template, validate_imagery
    from looking_glass.runtime.settings import WorkerSettings

    config.validate()  # option errors before any request
    _, aoi = read_aoi(args.aoi)
    imagery = validate_imagery(args.imagery, args.bands)
    if imagery.kind == "xyz":
        probe_template(imagery.source, aoi.geometry)
    token_env = {k: v for k, v in os.environ.items() if k in ("LG_IMAGERY_SECRET", "LG_IMAGERY_TOKEN_HEADER")}
    try:
        source = open_imagery(WorkerSettings.from_env({**token_env, **imagery.worker_env()}))
    except ImagerySourceError as exc:
        raise CommandError(f"--imagery {exc}") from None
    try:
        return prepare_from_source(source, aoi.geometry, args.footprints, args.out, config, overwrite=args.overwrite,
                                   log=bar.write, jobs=args.jobs * 4, progress=bar.update)
    finally:
        source.close()


class _ProgressBar:
    """``chips N/TOTAL`` on stderr: a tqdm bar on a terminal, else a line every 10 percent."""

    def __init__(self):
        import sys

        self.stream, self.bar, self.shown = sys.stderr, None, -1

    def __enter__(self) -> "_ProgressBar":
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.close()

    def write(self, message: str) -> None:
        """Print a log line without breaking the bar."""
        if self.bar is not None:
            self.bar.write(message)
        else:
            print(message)

    def update(self, done: int, total: int) -> None:
        """Show ``done`` of ``total`` candidate chips."""
        if self.stream.isatty():
            if self.bar is None:
                from tqdm import tqdm

                self.bar = tqdm(total=total, unit="chip", desc="chips", mininterval=0.5, file=self.stream)
            self.bar.update(done - self.bar.n)
            return
        tenth = done * 10 // max(total, 1)
        if tenth > self.shown:
            self.shown = tenth
            print(f"chips {done}/{total}", file=self.stream, flush=True)


def cmd_synth_data(args) -> int:
    """Write a training set drawn from the synthetic world, in prepare's format."""
    from looking_glass.datasets.synthdata import write_synthetic_dataset

    manifest = write_synthetic_dataset(args.out, args.tiles, seed=args.seed, overwrite=args.overwrite)
    counts = manifest["counts"]
    print(f"wrote {counts['train']} train and {counts['validation']} validation synthetic chips to {args.out}")
    return 0


def add_commands(sub) -> None:
    """Add ``prepare`` and ``synth-data`` to the subcommand parsers ``sub``."""
    prep = sub.add_parser("prepare", help="GeoTIFFs + GeoJSON footprints to training chips")
    prep.add_argument("--images", nargs="+",
                      help="GeoTIFFs: paths, globs, s3://bucket/key or s3://bucket/prefix/ (read in place)")
    prep.add_argument("--imagery", metavar="SOURCE",
                      help="instead of --images: the zoom-18 tiles of --aoi from an XYZ/TMS template or GeoTIFF/mosaic, "
                           "fetched as the workers fetch them")
    prep.add_argument("--aoi", help="with --imagery: the area (GeoJSON polygons, lon/lat) whose tiles become chips")
    prep.add_argument("--footprints", nargs="+", required=True,
                      help="GeoJSON footprints, the same kinds; one file labels every image, several pair with the images by id")
    prep.add_argument("--out", required=True, type=output_folder, help="output directory (shards + manifest.json)")
    prep.add_argument("--mode", choices=("native", "tiles"), default=None,
                      help="native-resolution chips (default for --images), or chips on the zoom-18 tile grid "
                           "(reprojected; always for --imagery)")
    prep.add_argument("--bands", help="1-based bands for R,G,B (e.g. 1,2,3; one band is replicated)")
    prep.add_argument("--chip-size", type=positive_int, default=256)
    prep.add_argument("--stride", type=positive_int, default=None,
                      help="native mode: px between chips (overlapping when below --chip-size; default: the chip size)")
    prep.add_argument("--jobs", type=positive_int, default=1,
                      help="images cut at the same time, in worker processes (--imagery: 4 x N tiles fetched at a time)")
    prep.add_argument("--sdt-clip", type=positive_float, default=10.0, help="clip SDT to +-N metres")
    prep.add_argument("--max-nodata", type=fraction, default=0.2, help="drop chips with more black/nodata")
    prep.add_argument("--val-fraction", type=fraction, default=0.2,
                      help="share of the split blocks that go to validation, 0..1 (default 0.2)")
    prep.add_argument("--split-block", type=positive_int, default=4,
                      help="chips per block side for the split (default 4; per chip when the chips make too few "
                           "blocks for both splits)")
    prep.add_argument("--seed", type=non_negative_int, default=0)
    prep.add_argument("--overwrite", action="store_true", help="replace an earlier prepared dataset")
    prep.set_defaults(func=cmd_prepare)

    synth = sub.add_parser("synth-data", help="a training set from the synthetic world (prepare format)")
    synth.add_argument("--tiles", type=positive_int, required=True)
    synth.add_argument("--out", required=True, type=output_folder, help="output directory")
    synth.add_argument("--seed", type=non_negative_int, default=0)
    synth.add_argument("--overwrite", action="store_true")
    synth.set_defaults(func=cmd_synth_data)
