"""An independent IaC scanner on the ``encryption=kms`` templates: checkov finds nothing beyond
the two findings the design accepts, listed in ``ACCEPTED``.

checkov is not a dependency of the project (it pins many packages of its own); install it into
a virtual environment of its own and point ``CHECKOV`` at it, or put it on PATH::

    python3 -m venv /tmp/checkov && /tmp/checkov/bin/pip install checkov
    CHECKOV=/tmp/checkov/bin/checkov .venv/bin/python -m pytest -q tests/infra/test_checkov.py

Runs offline (``--skip-download``: no policy download, no platform). Suppressions of findings
that do not apply are in the templates' metadata with their reasons (``stacks.nag.skip_checkov``).
The same check by hand, on the templates of ``npx cdk synth -c encryption=kms -o cdk.out``::

    checkov -d cdk.out --framework cloudformation --skip-download --compact
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

aws_cdk = pytest.importorskip("aws_cdk", reason="aws-cdk-lib is not installed (pip install -e '.[cdk]')")

from template_snapshots import CONTEXTS, QUIET_NODE_ENV, REPO_ROOT  # noqa: E402

from stacks import build_app, cdk_json_context  # noqa: E402

# Findings the design accepts, by check id, with the resources they may concern.
ACCEPTED = {
    # The enumerator needs no private network resource (S3, SQS, DynamoDB, Batch are public AWS
    # endpoints); neither do CDK's custom-resource handlers.
    "CKV_AWS_117": "any Lambda function (outside a VPC)",
    # The enumerator's failed asynchronous invocations go to its on-failure destination (a queue
    # with an alarm), which records more than a dead-letter queue would (the error, the event).
    "CKV_AWS_116": "TileEnumerator",
}


def checkov_command() -> str | None:
    for candidate in (
        os.environ.get("CHECKOV", ""),
        shutil.which("checkov") or "",
        str(Path(REPO_ROOT) / ".venv" / "bin" / "checkov"),
    ):
        if candidate and Path(candidate).exists():
            return candidate
    return None


def test_checkov_finds_only_the_accepted_findings_with_kms(tmp_path):
    checkov = checkov_command()
    if checkov is None:
        pytest.skip("checkov is not installed (see this module's docstring)")
    os.environ.update(QUIET_NODE_ENV)
    out = tmp_path / "cdk.out"
    app = aws_cdk.App(outdir=str(out), context={**cdk_json_context(), **CONTEXTS["kms"]})
    build_app(app, nag=False)  # cdk-nag: tests/infra/test_encryption.py
    app.synth()
    result = subprocess.run(
        [checkov, "-d", str(out), "--framework", "cloudformation", "--skip-download", "--quiet",
         "-o", "json"],
        capture_output=True, text=True, timeout=900, env={**os.environ, "BC_SKIP_MAPPING": "TRUE"},
    )
    assert result.returncode in (0, 1), result.stderr[-2000:]  # 1: findings
    reports = json.loads(result.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    failed = [check for report in reports for check in report.get("results", {}).get("failed_checks", [])]
    unexpected = [
        f"{c['check_id']} {c['resource']}: {c['check_name']}"
        for c in failed
        if c["check_id"] not in ACCEPTED
        or (ACCEPTED[c["check_id"]] != "any Lambda function (outside a VPC)" and ACCEPTED[c["check_id"]] not in c["resource"])
    ]
    assert unexpected == []
    assert {c["check_id"] for c in failed} == set(ACCEPTED)  # the report was read
    passed = sum(len(report.get("results", {}).get("passed_checks", [])) for report in reports)
    assert passed == 0 or passed > 100  # --quiet lists failures only
