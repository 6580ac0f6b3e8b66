"""cfn-lint on every template the app synthesizes, for the default settings and the variants.

cfn-lint must exit 0. Only these checks are ignored, each a pattern CDK itself generates:

- W3005 (DependsOn already enforced by a GetAtt/Ref): CDK makes a Lambda function or state
  machine depend on its role *and* the role's default policy, so the policy exists before the
  first invocation. The GetAtt to the role makes the role part redundant, not the policy part,
  and CDK writes both in one DependsOn list. Seen on our functions, the state machine, and CDK's
  own custom-resource handlers (bucket notifications, default security group restriction).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

aws_cdk = pytest.importorskip("aws_cdk", reason="aws-cdk-lib is not installed (pip install -e '.[cdk]')")

from stacks import build_app, cdk_json_context, stack_names  # noqa: E402

IGNORED_CHECKS = {
    "W3005": "CDK's DependsOn on a role and its default policy (see module docstring)",
}
REGIONS = ("us-east-1", "eu-west-1")
CONTEXTS = {
    "default": {},
    "isolated-secret-alarms": {
        "stack_name": "LgLint",
        "worker_subnets": "isolated",
        "tile_url_template": "https://my-tiles.s3.eu-west-1.amazonaws.com/{z}/{x}/{y}.png",
        "imagery_secret_name": "looking-glass/imagery-token",
        "alarm_topic_arn": "arn:aws:sns:eu-west-1:123456789012:ops-alarms",
        "enumerator_reserved_concurrency": 0,
    },
    "public-on-demand-model": {
        "worker_subnets": "public",
        "spot": False,
        "training_spot": False,
        "model_s3_uri": "s3://my-models/looking-glass/v3/model.tar.gz",
        "nat_gateways": 2,
    },
    "kms": {  # tests/infra/template_snapshots.py CONTEXTS["kms"]
        "stack_name": "LgKms",
        "encryption": "kms",
        "alarm_topic_arn": "arn:aws:sns:eu-west-1:123456789012:ops-alarms",
        "imagery_secret_name": "looking-glass/imagery-token",
        "training_vpc": True,
        "training_network_isolation": True,
    },
}


def cfn_lint_command() -> list[str]:
    exe = Path(sys.executable).parent / "cfn-lint"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("cfn-lint")
    if found is None:
        pytest.fail("cfn-lint is not installed (pip install -e '.[dev]')")
    return [found]


@pytest.mark.parametrize("name", sorted(CONTEXTS))
def test_cfn_lint_passes_on_every_synthesized_template(tmp_path, name):
    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    out = tmp_path / "cdk.out"
    app = aws_cdk.App(outdir=str(out), context={**cdk_json_context(), **CONTEXTS[name]})
    lg = build_app(app, nag=False)  # cdk-nag runs in tests/infra/test_cdk_synth.py
    app.synth()
    templates = sorted(out.glob("*.template.json"))
    assert [t.name for t in templates] == sorted(
        f"{n}.template.json" for n in stack_names(lg.config.stack_name).values()
    )
    result = subprocess.run(
        [
            *cfn_lint_command(),
            "--format", "parseable",
            "--regions", *REGIONS,
            "--ignore-checks", *IGNORED_CHECKS,
            "--",
            *map(str, templates),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-6000:]


def test_cfn_lint_finds_a_broken_template(tmp_path):
    """The linter really runs on what we give it: an invalid template fails."""
    bad = tmp_path / "bad.template.json"
    bad.write_text(
        '{"Resources": {"Q": {"Type": "AWS::SQS::Queue", "Properties": {"VisibilityTimeout": "x"}}}}'
    )
    result = subprocess.run(
        [*cfn_lint_command(), "--format", "parseable", "--", str(bad)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode != 0 and "E30" in result.stdout, result.stdout + result.stderr
