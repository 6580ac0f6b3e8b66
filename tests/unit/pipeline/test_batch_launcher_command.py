"""``BatchLauncher.aws_command`` is the launcher's own SubmitJob as an ``aws batch submit-job``
command line (what ``retry`` tells a user to run when it could not start workers): parsed back
by a shell, it carries the same job name, queue, definition, overrides and array size."""

from __future__ import annotations

import json
import shlex

import pytest

from looking_glass.pipeline.launchers import BatchLauncher

QUEUE = "arn:aws:batch:us-east-1:123456789012:job-queue/LookingGlass queue"  # a space: must be quoted
DEFINITION = "arn:aws:batch:us-east-1:123456789012:job-definition/worker:7"


def _options(command: str) -> dict[str, str]:
    argv = shlex.split(command)
    assert argv[:3] == ["aws", "batch", "submit-job"]
    flags = argv[3:]
    assert len(flags) % 2 == 0 and all(f.startswith("--") for f in flags[::2]), argv
    return dict(zip(flags[::2], flags[1::2], strict=True))


@pytest.mark.parametrize("workers", [1, 3])
def test_the_aws_command_submits_what_launch_submits(workers):
    launcher = BatchLauncher(None, QUEUE, DEFINITION)
    submitted = launcher.submission("f48bed06930412c4ffc7dd34", workers)
    options = _options(launcher.aws_command("f48bed06930412c4ffc7dd34", workers))
    assert options["--job-name"] == submitted["jobName"]
    assert options["--job-queue"] == QUEUE and options["--job-definition"] == DEFINITION
    assert json.loads(options["--container-overrides"]) == submitted["containerOverrides"]
    if workers == 1:  # a plain job: Batch array jobs need at least 2 children
        assert "--array-properties" not in options and "arrayProperties" not in submitted
    else:
        assert options["--array-properties"] == f"size={workers}" == f"size={submitted['arrayProperties']['size']}"
