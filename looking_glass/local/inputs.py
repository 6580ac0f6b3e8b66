"""What ``looking-glass demo`` and ``looking-glass up`` run on: imagery, model and reference.

Options (added to a command's parser by :func:`add_run_options`):

``--imagery SOURCE``  an XYZ/TMS URL template (``{z}``, ``{x}``, ``{y}`` or ``{-y}``) or a
                      GeoTIFF/COG (local path or ``s3://bucket/key.tif``): the worker's own
                      sources (LG_TILE_URL_TEMPLATE / LG_IMAGERY_GEOTIFF). Default: the
                      synthetic world, served locally.
``--bands B``         GeoTIFF bands as R,G,B or one grey band (LG_IMAGERY_BANDS).
``--model PATH``      a Keras model with its JSON sidecar, the sidecar, or a folder holding one
                      (LG_MODEL_PATH). Default: the shipped one.
``--truth FILE``      (demo) reference footprints, GeoJSON in any CRS, read as ``prepare`` reads them.

Everything is checked by :func:`validated_inputs` before anything starts, with the checks the
worker, prepare and the segmenter apply themselves (``WorkerSettings.from_env`` and
``open_imagery`` for the imagery, prepare's footprint reader for ``--truth``, the model-path
check every command shares for ``--model``); a bad value is one line on standard error and exit code 2
(:func:`inputs_or_exit`).

With a GeoTIFF and no ``--aoi`` the AOI is the image's footprint (its outline in lon/lat, as the
worker's GeoTIFF source sees it), so the job covers exactly the zoom-18 tiles the image touches.
An XYZ template needs ``--aoi`` (a template has no extent). ``up`` also takes
``--imagery NAME=SOURCE[@YYYY-MM-DD]`` (repeated): named sources jobs choose with
``submit --imagery NAME`` (:func:`validate_named_imagery`), and ``--attribution NAME=TEXT``
(repeated): the credit maps show under a source's imagery (``default=TEXT``: the default
source's; :func:`validate_attributions`).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

from looking_glass.errors import EXIT_BAD_INPUT, LookingGlassError

# The worker settings' messages, in the words of these options.
_SETTING_NAMES = (
    ("LG_IMAGERY_GEOTIFF=", "--imagery "),
    ("LG_IMAGERY_BANDS=", "--bands "),
    ("LG_IMAGERY_BANDS applies to LG_IMAGERY_GEOTIFF only", "--bands applies to a GeoTIFF --imagery only"),
    ("tile URL template", "--imagery"),
)


class InputError(LookingGlassError, ValueError):
    """A bad --imagery/--bands/--model/--truth/--aoi value; the message is one line for the user
    and the command exits with status 2, before anything starts."""

    exit_code = EXIT_BAD_INPUT


@dataclass(frozen=True)
class Imagery:
    """A validated imagery source for the embedded run.

    ``kind`` is ``"xyz"`` (``source`` is a URL template) or ``"geotiff"`` (``source`` is an
    absolute local path or an ``s3://`` URI). ``footprint`` (GeoTIFF only) is the image's outline
    as a shapely Polygon in lon/lat degrees (EPSG:4326).
    """

    kind: str
    source: str
    bands: tuple[int, ...] | None = None
    footprint: object = None

    def worker_env(self) -> dict[str, str]:
        """The worker settings (environment) that name this source."""
        if self.kind == "xyz":
            return {"LG_TILE_URL_TEMPLATE": self.source, "LG_IMAGERY_GEOTIFF": ""}
        env = {"LG_TILE_URL_TEMPLATE": "", "LG_IMAGERY_GEOTIFF": self.source}
        if self.bands:
            env["LG_IMAGERY_BANDS"] = ",".join(map(str, self.bands))
        return env

    def describe(self) -> str:
        """The source in words for messages (an XYZ template without its query string)."""
        if self.kind == "xyz":
            from looking_glass.imagery.xyz import public_imagery_name

            return f"XYZ tiles {public_imagery_name(self.source)}"
        return f"GeoTIFF {self.source}"

    def footprint_aoi(self, name: str) -> bytes:
        """The image's footprint as AOI GeoJSON bytes (a Feature named ``name``)."""
        import shapely.geometry

        doc = {
            "type": "Feature",
            "properties": {"name": name},
            "geometry": shapely.geometry.mapping(self.footprint),
        }
        return json.dumps(doc).encode()


@dataclass
class RunInputs:
    """Validated inputs of ``demo``/``up``. ``imagery`` None means the synthetic world; ``model``
    "" the shipped model; ``aoi_bytes`` None the sample AOI; ``warnings``: lines the command shows
    before it starts (e.g. the --truth features skipped)."""

    imagery: Imagery | None = None
    model: str = ""
    truth: object = None  # looking_glass.results.truth.TruthFootprints
    truth_path: str = ""
    aoi_bytes: bytes | None = None
    aoi_filename: str = "sample_aoi.geojson"
    warnings: list[str] = field(default_factory=list)
    # Named sources of `up --imagery NAME=SOURCE[@DATE]` (runtime.imagery_sources), checked, with
    # their `--attribution NAME=TEXT`.
    sources: dict = field(default_factory=dict)
    # `up --attribution default=TEXT`: what maps credit for the default source (None: its own credit).
    default_attribution: str | None = None

    def worker_env(self) -> dict[str, str]:
        """Worker settings for the imagery and the model (nothing for the defaults)."""
        env = dict(self.imagery.worker_env()) if self.imagery else {}
        if self.model:
            env["LG_MODEL_PATH"] = self.model
        return env

    def model_env(self) -> dict[str, str]:
        """Worker settings for the model only (``LG_MODEL_PATH``; nothing for the shipped one):
        what ``EmbeddedStack(worker_env=...)`` takes beside ``imagery``."""
        return {"LG_MODEL_PATH": self.model} if self.model else {}

    def embedded_options(self) -> dict:
        """What ``up`` passes to ``run_embedded`` (and ``EmbeddedStack``): the model's worker
        settings, the default imagery, the named sources and the default's attribution."""
        return {"worker_env": self.model_env(), "imagery": self.imagery, "imagery_sources": self.sources,
                "imagery_attribution": self.default_attribution}

    def describe_imagery(self) -> str:
        """The imagery in words (``synthetic imagery`` for the default)."""
        return self.imagery.describe() if self.imagery else "synthetic imagery"


def add_run_options(parser: argparse.ArgumentParser, truth: bool = False, named: bool = False) -> None:
    """Add --imagery, --bands and --model (unless the parser has it) and, with ``truth``,
    --truth to a demo/up parser; with ``named``, --imagery may be repeated as NAME=SOURCE, and
    --attribution NAME=TEXT (repeated) credits a source on maps."""
    if named:
        parser.add_argument(
            "--imagery", metavar="[NAME=]SOURCE[@DATE]", action="append",
            help="imagery: an XYZ/TMS URL template (https://.../{z}/{x}/{y}.png), a GeoTIFF/COG (path or "
                 "s3://bucket/key.tif) or a mosaic (a.tif,b.tif, .vrt, MosaicJSON, STAC items); once without "
                 "NAME= for the default (else the synthetic world), and repeated as NAME=SOURCE to register "
                 "sources jobs choose with `submit --imagery NAME`; NAME=SOURCE@YYYY-MM-DD gives a named source's "
                 "capture date",
        )
        parser.add_argument(
            "--attribution", metavar="NAME=TEXT", action="append",
            help="the credit maps show under source NAME's imagery (a NAME of --imagery NAME=SOURCE, or "
                 "'default' for the default source), e.g. --attribution 'city=(c) City survey 2024'; repeatable",
        )
    else:
        parser.add_argument(
            "--imagery", metavar="SOURCE",
            help="imagery: an XYZ/TMS URL template (https://.../{z}/{x}/{y}.png), a GeoTIFF/COG "
                 "(path or s3://bucket/key.tif) or a mosaic (a.tif,b.tif, .vrt, MosaicJSON, STAC items); "
                 "default: the synthetic world",
        )
    parser.add_argument("--bands", help="GeoTIFF bands as R,G,B (e.g. 3,2,1) or one grey band (default: 1 or 1,2,3)")
    if "--model" not in parser._option_string_actions:
        parser.add_argument("--model", default="", help="Keras model file with its .json sidecar, the sidecar, or a folder holding one (default: the shipped model)")
    if truth:
        parser.add_argument(
            "--truth", metavar="FOOTPRINTS",
            help="reference building footprints (GeoJSON, any CRS, as prepare reads them): per-tile "
                 "truth area, area error and pixel IoU/precision/recall",
        )


def validate_model(path: str) -> str:
    """The absolute ``.keras`` file ``--model`` names ("" stays "": the shipped model), resolved
    and checked as every command checks a model path
    (:func:`looking_glass.model.model_file.check_model_file`: a ``.keras`` file, its ``.json``
    sidecar, or a folder holding one model; an intact Keras archive whose config's input and
    output match its sidecar). The check reads the archive without TensorFlow: ``demo`` and the
    long-lived ``up`` keep no Keras in their own process (only their workers load the model, and a
    worker that cannot says so in one line, exit 3). Raises InputError, so no server or worker
    starts for a model that is not one."""
    if not path:
        return ""
    from looking_glass.model.model_file import ModelFileError, check_model_file

    try:
        return str(check_model_file(path, what="--model").path)
    except ModelFileError as exc:
        raise InputError(str(exc)) from None


# NAME=SOURCE: any text before the first '=' without a path or URL character ('/', '\\', ':')
# is meant as a name (so 'my city=a.tif' is a bad name, checked by parse_source_entry, not a
# missing file 'my city=a.tif'); '/data/a=b.tif' and URLs with '=' in their query stay sources.
_NAMED = re.compile(r"^(?P<name>[^=/\\:]+)=(?P<source>.+)$")


def validate_named_imagery(values: list[str], session=None) -> tuple[dict, str | None]:
    """``up --imagery`` values: (the NAME=SOURCE[@DATE] ones as checked ImagerySources by name,
    the one without a name or None). Each GeoTIFF or mosaic is opened once here (it exists, the
    images agree, dates parse); local paths become absolute. Raises InputError."""
    from looking_glass.imagery.geotiff import GeoTiffError
    from looking_glass.imagery.mosaic import open_geotiff_source
    from looking_glass.runtime.imagery_sources import DEFAULT_IMAGERY_NAME, ImagerySourcesError, parse_source_entry

    sources, unnamed = {}, []
    for value in values:
        match = _NAMED.match(value)
        if match is None:
            unnamed.append(value)
            continue
        name = match["name"]
        if name in sources or name == DEFAULT_IMAGERY_NAME:
            raise InputError(f"--imagery {name}=...: the name {name!r} is " + ("given twice" if name in sources else "the default source's"))
        try:
            entry = parse_source_entry(name, match["source"])
        except ImagerySourcesError as exc:
            raise InputError(f"--imagery {exc}") from None
        if entry.is_template:  # else its units would be retried into the dead-letter queue
            probe_template(entry.source, label=f"--imagery {name}")
        else:
            try:
                open_geotiff_source(entry.source, session=session, capture_date=entry.date).close()
            except GeoTiffError as exc:
                raise InputError(f"--imagery {name}: {exc}") from None
            parts = [p.strip() for p in entry.source.split(",")]
            entry = replace(entry, source=",".join(p if "://" in p else str(Path(p).resolve()) for p in parts))
        sources[name] = entry
    if len(unnamed) > 1:
        raise InputError(f"--imagery without NAME= given {len(unnamed)} times: one default source at most "
                         "(name the others: --imagery NAME=SOURCE)")
    return sources, (unnamed[0] if unnamed else None)


def validate_attributions(values: list[str], sources: dict) -> tuple[dict, str | None]:
    """``up --attribution NAME=TEXT`` values applied to the checked named ``sources``: (the
    sources with their attribution, the default source's attribution or None). NAME is a named
    source or ``default``; TEXT 1-200 printable characters (``check_attribution``). Raises
    InputError: no ``=``, an unknown NAME (with the names there are), a NAME given twice, a bad TEXT."""
    from looking_glass.runtime.imagery_sources import (
        DEFAULT_IMAGERY_NAME,
        ImagerySourcesError,
        check_attribution,
        unknown_imagery_reason,
    )

    sources, default, seen = dict(sources), None, set()
    for value in values:
        name, sep, text = value.partition("=")
        if not sep or not name:
            raise InputError(f"--attribution {value!r}: give NAME=TEXT (NAME: a source of --imagery NAME=SOURCE, or 'default')")
        if name != DEFAULT_IMAGERY_NAME and name not in sources:
            known = [*sources, DEFAULT_IMAGERY_NAME]
            reason = unknown_imagery_reason(name, known).replace('with this deployment', 'by --imagery NAME=SOURCE')
            raise InputError(f"--attribution {name}=...: {reason}")
        if name in seen:
            raise InputError(f"--attribution {name}=...: given twice")
        seen.add(name)
        try:
            text = check_attribution(name, text)
        except ImagerySourcesError as exc:
            raise InputError(f"--attribution {exc}") from None
        if name == DEFAULT_IMAGERY_NAME:
            default = text
        else:
            sources[name] = replace(sources[name], attribution=text)
    return sources, default


def validate_imagery(source: str | None, bands: str | None = None, session=None) -> Imagery | None:
    """The imagery source, checked with the worker's own settings and ``open_imagery`` (for a
    GeoTIFF: it exists, reads as a north-up GeoTIFF with a CRS, the bands exist; an s3:// object
    is looked up with ``session``'s credentials). None when no source is given (synthetic world).
    Raises InputError."""
    if not source:
        if bands:
            raise InputError("--bands applies to a GeoTIFF --imagery only")
        return None
    from looking_glass.imagery.xyz import ImagerySourceError, open_imagery
    from looking_glass.runtime.imagery_sources import CaptureDateError, parse_capture_date, split_capture_date
    from looking_glass.runtime.settings import SettingsError, WorkerSettings

    plain, date = split_capture_date(source)
    if date is not None:  # else '@2024/01/01' would be read as part of the URL or file name
        try:
            parse_capture_date(date, f"--imagery {plain}")
        except CaptureDateError as exc:
            raise InputError(str(exc)) from None
        raise InputError(f"--imagery {plain}@{date}: a capture date goes with a named source "
                         f"(up --imagery NAME={plain}@{date}, then submit --imagery NAME)")
    is_url = "://" in source and not source.startswith("s3://")
    env = {"LG_TILE_URL_TEMPLATE": source} if is_url else {"LG_IMAGERY_GEOTIFF": source}
    if bands:
        env["LG_IMAGERY_BANDS"] = bands
    try:
        settings = WorkerSettings.from_env(env)
    except SettingsError as exc:
        message = str(exc)
        for setting, option in _SETTING_NAMES:
            message = message.replace(setting, option)
        raise InputError(message) from None
    try:
        opened = open_imagery(settings, session=session)
    except ImagerySourceError as exc:
        raise InputError(f"--imagery {exc}") from None
    try:
        if is_url:
            return Imagery("xyz", source)
        from looking_glass.imagery.geotiff import lonlat_footprint

        footprint = lonlat_footprint(opened.outline)
        if not source.startswith("s3://") and "," not in source:
            source = str(Path(source).resolve())  # the workers may run elsewhere than here
        elif "," in source:
            source = ",".join(p if p.startswith("s3://") else str(Path(p.strip()).resolve()) for p in source.split(","))
        return Imagery("geotiff", source, tuple(opened.bands) if bands else None, footprint)
    finally:
        opened.close()


def probe_template(template: str, aoi_geometry=None, timeout_s: float = 10.0, label: str | None = None) -> None:
    """Ask the tile server for one tile once (the AOI's first zoom-18 tile; without an AOI, the
    world tile 0/0/0): any answer but 401/403 will do (a 404 is a tile without imagery). Raises
    InputError naming ``label`` (the option and source; default ``--imagery TEMPLATE``) and the URL asked (without its query
    string, which may hold a key) when the server cannot be reached or refuses access, which the
    workers would otherwise retry until their units reach the dead-letter queue and the job
    waits forever. ``demo``, ``up`` and ``prepare`` all check a template here."""
    import requests

    from looking_glass.imagery.xyz import expand_template, public_imagery_name

    if aoi_geometry is None:
        x, y, z = 0, 0, 0
    else:
        from looking_glass.tiling.cover import iter_tiles, tile_runs

        x, y, z = next(iter(iter_tiles(tile_runs(aoi_geometry))))
    label = label or f"--imagery {public_imagery_name(template)}"
    url = expand_template(template, x, y, z)
    shown_url = public_imagery_name(url)
    try:
        resp = requests.get(url, timeout=timeout_s)
    except requests.RequestException as exc:
        raise InputError(f"{label}: cannot reach the tile server: GET {shown_url} failed ({type(exc).__name__}); "
                         "is it running, and is the URL template right?") from None
    if resp.status_code in (401, 403):
        raise InputError(f"{label}: the tile server refused access to {shown_url} (HTTP {resp.status_code})")


def validate_truth(path: str | None):
    """Footprints read by prepare's reader, or None. Raises InputError, also for a file without
    any polygon (an empty FeatureCollection): nothing to compare the run with (docs/cli.md)."""
    if not path:
        return None
    from looking_glass.results.truth import TruthError, load_truth

    try:
        truth = load_truth(path)
    except TruthError as exc:
        raise InputError(f"--truth {exc}") from None
    if len(truth.layer.geoms) == 0:
        raise InputError(f"--truth {path}: no building polygons in it (an empty FeatureCollection): "
                         "nothing to compare the run with; give footprints, or leave --truth out")
    return truth


def validated_inputs(args, session=None) -> RunInputs:
    """Check the imagery, model, truth and AOI options of a parsed demo/up command line.

    Reads ``args.imagery``, ``args.bands``, ``args.model`` and, where present, ``args.truth`` and
    ``args.aoi``. Starts nothing. Raises InputError with one line."""
    from looking_glass.tiling.aoi import AoiError, parse_aoi

    inputs = RunInputs()
    imagery = getattr(args, "imagery", None)
    if isinstance(imagery, list):  # `up`: [NAME=]SOURCE, repeated
        inputs.sources, unnamed = validate_named_imagery(imagery, session)
        imagery = unnamed
    attributions = getattr(args, "attribution", None)
    if attributions:  # `up --attribution NAME=TEXT`, repeated
        inputs.sources, inputs.default_attribution = validate_attributions(attributions, inputs.sources)
    inputs.imagery = validate_imagery(imagery, getattr(args, "bands", None), session)
    inputs.model = validate_model(getattr(args, "model", "") or "")
    truth_path = getattr(args, "truth", None)
    if truth_path and inputs.imagery is None:
        raise InputError("--truth needs --imagery (the synthetic world is its own truth)")
    inputs.truth = validate_truth(truth_path)
    if inputs.truth is not None:  # what the reader skipped or repaired: one line, shown by the command
        inputs.warnings += [f"--truth {line}" for line in inputs.truth.layer.warnings]
    inputs.truth_path = truth_path or ""
    aoi = getattr(args, "aoi", None)
    if aoi:
        p = Path(aoi)
        if not p.is_file():
            raise InputError(f"--aoi {aoi}: AOI file not found")
        data = p.read_bytes()
        try:
            parsed = parse_aoi(data, default_name=p.stem)
        except AoiError as exc:
            raise InputError(f"--aoi {aoi}: {exc}") from None
        inputs.aoi_bytes, inputs.aoi_filename = data, p.name
        if inputs.imagery is not None and inputs.imagery.kind == "xyz":
            probe_template(inputs.imagery.source, parsed.geometry)
        elif inputs.imagery is not None and inputs.imagery.footprint is not None:
            from looking_glass.imagery.overlap import AoiOutsideImagery, check_aoi_meets_footprint

            try:  # else every tile would be no_imagery and the run COMPLETE with nothing done
                check_aoi_meets_footprint(parsed.geometry, inputs.imagery.footprint, inputs.imagery.source)
            except AoiOutsideImagery as exc:
                raise InputError(f"--aoi {aoi}: {exc}") from None
    elif hasattr(args, "aoi") and inputs.imagery is not None:
        if inputs.imagery.kind == "xyz":
            raise InputError("--imagery with a URL template needs --aoi (a template has no extent)")
        stem = Path(inputs.imagery.source.rsplit("/", 1)[-1]).stem or "image"
        inputs.aoi_filename = f"{stem}-footprint.geojson"
        inputs.aoi_bytes = inputs.imagery.footprint_aoi(f"{stem}-footprint")
    elif inputs.imagery is not None and inputs.imagery.kind == "xyz":  # `up`: no AOI, one tile of the world
        probe_template(inputs.imagery.source)
    return inputs


def inputs_or_exit(args, session=None) -> RunInputs:
    """:func:`validated_inputs`, or ``error: ...`` on standard error and exit code 2."""
    try:
        return validated_inputs(args, session)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_BAD_INPUT) from None
