"""Snapshots of the synthesized CloudFormation templates, to show that a refactoring of ``stacks/``
leaves them equal as data.

Every context variant the infra tests synthesize (``CONTEXTS``) is built in-process with
``stacks.build_app`` (cdk-nag included: its acknowledgements are written into the templates as
metadata), each stack's template is normalised (``normalise``: asset hashes, which follow the
content of the source tree, become ``<asset-hash>``) and written as sorted, indented JSON.

Used by ``test_template_equality.py`` (against the committed snapshots in ``snapshots/``) and as a
script, to write a set of snapshots or compare two::

    .venv/bin/python tests/infra/template_snapshots.py write /tmp/cdk-before
    .venv/bin/python tests/infra/template_snapshots.py compare /tmp/cdk-before   # vs the code now
    .venv/bin/python tests/infra/template_snapshots.py write tests/infra/snapshots  # accept a change
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent.parent
SNAPSHOTS = HERE / "snapshots"
QUIET_NODE_ENV = {"JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20", "CDK_DISABLE_VERSION_CHECK": "true"}

# The contexts of tests/infra/test_cdk_synth.py and tests/infra/test_cfn_lint.py (on top of
# cdk.json's): every network mode, the imagery sources, spot and on-demand, images from ECR.
CONTEXTS: dict[str, dict[str, Any]] = {
    "default": {},
    "variant": {
        "stack_name": "LgVariant",
        "worker_subnets": "isolated",
        "tile_url_template": "https://my-tiles.s3.eu-west-1.amazonaws.com/{z}/{x}/{y}.png",
        "imagery_secret_name": "looking-glass/imagery-token",
        "alarm_topic_arn": "arn:aws:sns:eu-west-1:123456789012:ops-alarms",
        "enumerator_reserved_concurrency": 0,
    },
    "optional-settings": {
        "model_s3_uri": "s3://my-models/looking-glass/v3/model.tar.gz",
        "worker_subnets": "public",
        "spot": False,
        "training_spot": False,
        "worker_image": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/lg-worker:1.2",
        "training_image": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/lg-train:7",
    },
    "geotiff": {
        "tile_url_template": "",
        "imagery_geotiff": "s3://my-imagery/kigali/2024/ortho.tif",
        "imagery_bands": [3, 2, 1],
        "worker_subnets": "isolated",
    },
    "public-on-demand-model": {
        "worker_subnets": "public",
        "spot": False,
        "training_spot": False,
        "model_s3_uri": "s3://my-models/looking-glass/v3/model.tar.gz",
        "nat_gateways": 2,
    },
    # encryption=kms with the key the stacks create, alarm topic and imagery secret (their key
    # policy and grants), the training job in a VPC with network isolation.
    "kms": {
        "stack_name": "LgKms",
        "encryption": "kms",
        "alarm_topic_arn": "arn:aws:sns:eu-west-1:123456789012:ops-alarms",
        "imagery_secret_name": "looking-glass/imagery-token",
        "training_vpc": True,
        "training_network_isolation": True,
    },
    # encryption=kms with the user's own key; isolated workers, a GeoTIFF, on-demand.
    "kms-own-key": {
        "encryption": "kms",
        "kms_key_arn": "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
        "tile_url_template": "",
        "imagery_geotiff": "s3://my-imagery/kigali/2024/ortho.tif",
        "worker_subnets": "isolated",
        "spot": False,
        "worker_root_volume_gb": 200,
    },
}

# Asset hashes (SHA-256, lowercase hex) in S3 keys and image tags; they follow the source tree.
_ASSET_HASH = re.compile(r"[0-9a-f]{64}")


def normalise(value: Any) -> Any:
    """``value`` (a parsed template) with every asset hash replaced by ``<asset-hash>``."""
    if isinstance(value, str):
        return _ASSET_HASH.sub("<asset-hash>", value)
    if isinstance(value, list):
        return [normalise(v) for v in value]
    if isinstance(value, dict):
        return {normalise(k): normalise(v) for k, v in value.items()}
    return value


def synthesize(context: Mapping[str, Any]) -> dict[str, dict]:
    """The normalised template of each stack, by stack suffix (``Storage``, ``Inference``, ...)."""
    if str(REPO_ROOT) not in sys.path:  # run as a script
        sys.path.insert(0, str(REPO_ROOT))
    os.environ.update(QUIET_NODE_ENV)
    import aws_cdk as cdk

    from stacks import build_app, cdk_json_context, stack_names

    with tempfile.TemporaryDirectory(prefix="lg-snapshot-") as out:
        app = cdk.App(outdir=out, context={**cdk_json_context(), **context})
        lg = build_app(app, nag=True)
        assembly = app.synth()
        names = stack_names(lg.config.stack_name)
        return {
            suffix: normalise(assembly.get_stack_by_name(name).template) for suffix, name in names.items()
        }


def snapshot_path(root: Path, context_name: str, suffix: str) -> Path:
    return root / context_name / f"{suffix}.json"


def write(root: Path, contexts: Mapping[str, Mapping[str, Any]] = CONTEXTS) -> None:
    """Write the snapshots of ``contexts`` under ``root/<context>/<suffix>.json``."""
    for name, context in contexts.items():
        for suffix, template in synthesize(context).items():
            path = snapshot_path(root, name, suffix)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(template, indent=1, sort_keys=True) + "\n")


def job_definition_environment(context: str, root: Path = SNAPSHOTS) -> dict[str, Any]:
    """The worker job definition's variables in the snapshot of ``context`` (name -> value, a
    value that references another resource left as its intrinsic)."""
    template = json.loads(snapshot_path(root, context, "Inference").read_text())
    (definition,) = [r for r in template["Resources"].values() if r["Type"] == "AWS::Batch::JobDefinition"]
    return {e["Name"]: e["Value"] for e in definition["Properties"]["ContainerProperties"]["Environment"]}


def differences(expected: Any, actual: Any, where: str = "") -> Iterator[str]:
    """Where two parsed templates differ, as ``path: expected != actual`` lines."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        for key in sorted(expected.keys() | actual.keys()):
            if key not in actual:
                yield f"{where}/{key}: only in the snapshot"
            elif key not in expected:
                yield f"{where}/{key}: only in the new template"
            else:
                yield from differences(expected[key], actual[key], f"{where}/{key}")
    elif isinstance(expected, list) and isinstance(actual, list) and len(expected) == len(actual):
        for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
            yield from differences(e, a, f"{where}[{i}]")
    elif expected != actual:
        yield f"{where}: {json.dumps(expected)[:300]} != {json.dumps(actual)[:300]}"


def compare(root: Path, context_name: str) -> list[str]:
    """Differences between the snapshots of ``context_name`` under ``root`` and the code now."""
    found = []
    for suffix, template in synthesize(CONTEXTS[context_name]).items():
        path = snapshot_path(root, context_name, suffix)
        if not path.exists():
            found.append(f"{context_name}/{suffix}: no snapshot at {path}")
            continue
        expected = json.loads(path.read_text())
        found += [f"{context_name}/{suffix}{line}" for line in differences(expected, template)]
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("write", "compare"))
    parser.add_argument("root", type=Path, nargs="?", default=SNAPSHOTS)
    args = parser.parse_args(argv)
    if args.command == "write":
        write(args.root)
        print(f"wrote {len(CONTEXTS)} contexts under {args.root}")
        return 0
    failed = False
    for name in CONTEXTS:
        found = compare(args.root, name)
        print(f"{name}: {'equal' if not found else f'{len(found)} difference(s)'}")
        for line in found[:50]:
            print("   ", line)
        failed |= bool(found)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
