"""``status``, ``results``, ``map`` and ``retry`` find a job by its id, the start of its id, or its
name; several matches or none end with exit status 2 and a message that says which."""

from __future__ import annotations

import pytest
from conftest import run_cli
from test_results_cli import FULL, add_job
from test_results_cli import env as env  # noqa: F401 - the fixture

from looking_glass.pipeline.jobref import MAX_LISTED, JobRefError, candidates, resolve_job

JOBS = [
    {"job_id": "ab12cd00", "name": "kigali", "status": "COMPLETE", "created_at": "2026-11-02"},
    {"job_id": "ab12ef00", "name": "nairobi", "status": "RUNNING", "created_at": "2026-11-01"},
    {"job_id": "ffee0000", "name": "ab12", "status": "FAILED", "created_at": "2026-10-30"},
]


@pytest.mark.parametrize("ref, expected", [
    ("kigali", ["ab12cd00"]),
    ("ab12c", ["ab12cd00"]),
    ("AB12C", ["ab12cd00"]),  # ids are lower-case hex; a prefix in capitals is the same prefix
    ("ab12", ["ab12cd00", "ab12ef00", "ffee0000"]),  # two id prefixes and one name
    ("Kigali", []),  # names match exactly
    ("zz", []),
])
def test_candidates_by_id_prefix_or_exact_name(ref, expected):
    assert [j["job_id"] for j in candidates(JOBS, ref)] == expected


def _two_jobs(env):
    first = add_job(env, FULL, name="kigali-east", created_at="2026-11-01T00:00:00+00:00")
    second = add_job(env, FULL, name="kigali-west", created_at="2026-11-02T00:00:00+00:00")
    return first, second


@pytest.mark.parametrize("command", [["status"], ["results"], ["retry", "--force"], ["map", "--out", "MAP"]])
def test_every_job_command_takes_a_name_or_an_id_prefix(env, capsys, command):
    first, second = _two_jobs(env)
    argv = [a.replace("MAP", str(env["tmp"] / "map")) for a in command]
    for ref in ("kigali-west", second[:7], second):
        code, out, err = run_cli(capsys, argv[0], ref, *argv[1:])
        assert code == 0, err
        if argv[0] in ("status", "retry"):
            assert second in out and first not in out
    if argv[0] == "map":
        assert (env["tmp"] / "map" / "map.html").is_file()


def test_an_ambiguous_name_lists_the_candidates_and_exits_2(env, capsys):
    first, second = _two_jobs(env)
    third = add_job(env, FULL, name="kigali-west", created_at="2026-11-03T00:00:00+00:00")
    code, out, err = run_cli(capsys, "results", "kigali-west")
    assert code == 2 and out == ""
    assert "'kigali-west' matches 2 jobs; give more of the job id" in err
    lines = [line for line in err.splitlines() if line.startswith("  ")]
    assert [line.split()[0] for line in lines] == [third, second]  # newest first
    assert first not in err and "2026-11-03" in lines[0]


def test_an_unknown_reference_says_where_to_look_and_exits_2(env, capsys):
    _two_jobs(env)
    for ref in ("kigali", "0123456789", "no-such-job"):
        code, _, err = run_cli(capsys, "status", ref)
        assert code == 2
        assert f"no job with the name or an id starting with '{ref}'" in err and "looking-glass jobs" in err
    code, _, err = run_cli(capsys, "map", "  ", "--out", str(env["tmp"] / "m"))
    assert code == 2 and "give a job id" in err


def test_a_mistyped_name_gets_the_close_names_suggested(env, capsys):
    _two_jobs(env)
    code, _, err = run_cli(capsys, "status", "kigali-wset")
    assert code == 2 and "did you mean 'kigali-west' or 'kigali-east'?" in err  # closest first
    code, _, err = run_cli(capsys, "status", "kigali-eastt")
    assert code == 2 and "did you mean 'kigali-east'" in err
    code, _, err = run_cli(capsys, "status", "no-such-job")
    assert code == 2 and "did you mean" not in err


def test_a_long_list_of_candidates_is_cut(env):
    store = env["store"]
    ids = [add_job(env, {(0, 0): ("done", "1", None)}, w=1, h=1, name="same") for _ in range(MAX_LISTED + 2)]
    with pytest.raises(JobRefError) as err:
        resolve_job(store, "same")
    message = str(err.value)
    assert f"matches {len(ids)} jobs" in message and "... and 2 more" in message
    assert sum(1 for line in message.splitlines() if line.startswith("  ") and "same" in line) == MAX_LISTED
