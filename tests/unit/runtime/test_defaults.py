"""One address per fact (issue 11): the fan-out defaults and the stack-name rule."""

import json
from pathlib import Path

import pytest

from looking_glass.runtime import defaults, resources
from looking_glass.runtime.settings import EnumeratorSettings

REPO = Path(__file__).resolve().parents[3]


def test_enumerator_settings_default_to_the_one_definition():
    s = EnumeratorSettings.from_env({"LG_WORKER_LAUNCHER": "local"})
    assert s.tiles_per_message == defaults.DEFAULT_TILES_PER_MESSAGE == 64
    assert s.max_tiles_per_job == defaults.DEFAULT_MAX_TILES_PER_JOB == 5_000_000
    assert s.tiles_per_worker == defaults.DEFAULT_TILES_PER_WORKER == 50_000
    assert s.max_workers == defaults.DEFAULT_MAX_WORKERS == 50


def test_cdk_json_lists_the_same_defaults():
    # cdk.json cannot import Python: this test is what keeps its copy equal.
    context = json.loads((REPO / "cdk.json").read_text())["context"]
    assert context["tiles_per_message"] == defaults.DEFAULT_TILES_PER_MESSAGE
    assert context["max_tiles_per_job"] == defaults.DEFAULT_MAX_TILES_PER_JOB
    assert context["tiles_per_worker"] == defaults.DEFAULT_TILES_PER_WORKER


def test_other_modules_read_the_defaults_from_runtime():
    from looking_glass.pipeline import workunits
    from looking_glass.tiling import estimate

    assert workunits.MAX_TILES_PER_MESSAGE is defaults.MAX_TILES_PER_MESSAGE
    assert estimate.estimate.__defaults__[0] == defaults.DEFAULT_TILES_PER_MESSAGE


# CloudFormation CreateStack: StackName is letters, digits and hyphens, starts with a letter,
# at most 128 characters. Every deployment stack is <name><suffix>.
def test_stack_name_rule_leaves_room_for_the_longest_suffix():
    longest = max(resources.STACK_SUFFIXES, key=len)
    assert resources.STACK_NAME_MAX + len(longest) == 128 == resources.CLOUDFORMATION_STACK_NAME_MAX
    ok = "A" + "b1-" * 39  # 118 characters
    assert len(ok) == resources.STACK_NAME_MAX
    assert resources.STACK_NAME_PATTERN.match(ok)
    assert len(ok + longest) <= 128
    assert not resources.STACK_NAME_PATTERN.match(ok + "x")


@pytest.mark.parametrize("bad", ["", "1abc", "-abc", "a_b", "a.b", "a b", "Ä"])
def test_stack_name_rule_refuses_what_cloudformation_refuses(bad):
    assert not resources.STACK_NAME_PATTERN.match(bad)


def test_the_cli_uses_the_same_stack_name_rule():
    from looking_glass.local import deployment

    assert deployment.STACK_NAME_PATTERN is resources.STACK_NAME_PATTERN
    names = deployment.stack_names("A" * resources.STACK_NAME_MAX)
    assert max(len(n) for n in names) == 128
