#!/usr/bin/env python3
"""CDK app entry point: `npx cdk synth` (see cdk.json) runs this file.

Settings come from the context in cdk.json, overridable per run, e.g.
`npx cdk synth -c max_vcpus=128 -c spot=false`. The stacks are built by stacks.build_app, which
the tests use too. Synth needs neither AWS credentials nor Docker; `cdk deploy` needs both (the
worker and training images are Docker image assets).
"""

from __future__ import annotations

import sys

import aws_cdk as cdk

from stacks import ConfigError, build_app, cdk_json_context


def main() -> None:
    """Build the app from the context and synthesize it; a bad setting exits with its message."""
    # The CLI already passes cdk.json's context (and -c values, which win); giving it here too
    # makes `python app.py` without the CLI build the same app.
    app = cdk.App(context=cdk_json_context())
    try:
        build_app(app)
    except ConfigError as exc:
        sys.exit(f"invalid CDK context (cdk.json or -c): {exc}")
    app.synth()


if __name__ == "__main__":
    main()
