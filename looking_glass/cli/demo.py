"""``demo``: the whole pipeline on an embedded AWS (moto), synthetic imagery and local workers."""

from __future__ import annotations

import sys
from pathlib import Path

from looking_glass.cli.common import output_folder, positive_float, positive_int
from looking_glass.local.inputs import add_run_options


def cmd_demo(args) -> int:
    """Run one job end to end and write summary.json, results.geojson and map.png."""
    from looking_glass.local.demo import print_summary, run_demo
    from looking_glass.local.inputs import validated_inputs

    inputs = validated_inputs(args)  # a bad --aoi/--imagery/--model/--truth: exit 2, nothing started
    for line in inputs.warnings:
        print(f"warning: {line}", file=sys.stderr)
    print(f"Looking Glass demo: embedded AWS (moto), {inputs.describe_imagery()}, {args.workers} local worker(s)")
    summary = run_demo(
        Path(args.out), inputs.aoi_bytes, inputs.aoi_filename, workers=args.workers, model_path=inputs.model,
        timeout_s=args.timeout, imagery=inputs.imagery, truth=inputs.truth,
    )
    print_summary(summary)
    print(f"wrote {args.out}/{', '.join(summary['outputs'])}")
    return 0


def add_commands(sub) -> None:
    """Add ``demo`` to the subcommand parsers ``sub``."""
    demo = sub.add_parser("demo", help="run the whole pipeline on the embedded default")
    demo.add_argument("--out", default="demo-output", type=output_folder, help="output directory (default ./demo-output)")
    demo.add_argument("--aoi", help="AOI GeoJSON (default: the sample shipped with the package)")
    demo.add_argument("--workers", type=positive_int, default=1, help="local worker processes (default 1)")
    demo.add_argument("--model", default="", help="Keras model file with its .json sidecar, the sidecar, or a folder holding one (default: the shipped model)")
    demo.add_argument("--timeout", type=positive_float, default=280.0, help="seconds to wait for the job")
    add_run_options(demo, truth=True)  # --imagery, --bands, --truth (looking_glass.local.inputs)
    demo.set_defaults(func=cmd_demo)
