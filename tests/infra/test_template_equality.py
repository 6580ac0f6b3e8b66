"""The synthesized templates equal the committed snapshots (``snapshots/``) as data, asset hashes
aside: a refactoring of ``stacks/`` must not change what CloudFormation deploys, down to the
logical IDs (a changed logical ID replaces the resource).

After an intended change to the infrastructure, review the difference and accept it with
``.venv/bin/python tests/infra/template_snapshots.py write``.
"""

from __future__ import annotations

import pytest

pytest.importorskip("aws_cdk", reason="aws-cdk-lib is not installed (pip install -e '.[cdk]')")

from template_snapshots import CONTEXTS, SNAPSHOTS, compare  # noqa: E402


@pytest.mark.parametrize("context_name", sorted(CONTEXTS))
def test_templates_equal_the_snapshots(context_name):
    found = compare(SNAPSHOTS, context_name)
    assert not found, (
        f"{len(found)} difference(s) from tests/infra/snapshots/{context_name} (if intended, accept "
        "with `.venv/bin/python tests/infra/template_snapshots.py write`):\n" + "\n".join(found[:40])
    )
