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


def _rerun(env):
    """Three jobs, two of them named kigali-west (a --rerun after `models use`): (first, second, third)."""
    first, second = _two_jobs(env)
    third = add_job(env, FULL, name="kigali-west", created_at="2026-11-03T00:00:00+00:00")
    env["store"].update_job(third, {"model": "s3://models/registry/roofs/2/model.keras", "imagery": "drone"})
    return first, second, third


def test_an_ambiguous_name_lists_the_candidates_and_exits_2(env, capsys):
    first, second, third = _rerun(env)
    code, out, err = run_cli(capsys, "results", "kigali-west")
    assert code == 2 and out == ""
    assert (f"'kigali-west' matches 2 jobs (newest first); give more of the job id, or 'kigali-west@latest' "
            f"for the newest ({third}):") in err
    lines = [line for line in err.splitlines() if line.startswith("  ")]
    assert [line.split()[0] for line in lines] == [third, second]  # newest first
    assert first not in err
    # what tells a rerun apart: status, submission time, imagery and model
    assert "submitted 2026-11-03" in lines[0] and "imagery drone" in lines[0] and "model roofs/2" in lines[0]
    assert "submitted 2026-11-02" in lines[1] and "imagery default" in lines[1] and "model default" in lines[1]


@pytest.mark.parametrize("command", [["status"], ["results"], ["retry", "--force"], ["map", "--out", "MAP"],
                                     ["export", "--out", "OUT.geojson"]])
def test_at_latest_takes_the_newest_job_of_a_name_in_every_command(env, capsys, command):
    first, second, third = _rerun(env)
    argv = [a.replace("MAP", str(env["tmp"] / "map")).replace("OUT", str(env["tmp"] / "b")) for a in command]
    code, out, err = run_cli(capsys, argv[0], "kigali-west@latest", *argv[1:])
    if argv[0] == "export":  # these jobs have no masks: export names the job it read, then stops
        assert code == 1 and f"error: job {third}: tile" in err
    else:
        assert code == 0, err
    assert (f"note: 'kigali-west@latest' is job {third} (submitted 2026-11-03T00:00:00+00:00), the newest of 2 "
            f"matching 'kigali-west'; the others: {second[:8]}") in err
    if argv[0] in ("status", "retry"):
        assert third in out and second not in out


def test_at_latest_of_one_job_says_nothing_and_id_prefixes_still_work(env, capsys):
    first, second, third = _rerun(env)
    code, out, err = run_cli(capsys, "status", "kigali-east@latest")
    assert code == 0 and first in out and "note:" not in err
    code, out, err = run_cli(capsys, "status", f"{second[:6]}@latest")  # an id prefix takes it too
    assert code == 0 and second in out
    code, out, err = run_cli(capsys, "status", second[:7])
    assert code == 0 and second in out and "note:" not in err


def test_a_name_that_ends_in_at_latest_is_found_by_that_name(env, capsys):
    _two_jobs(env)
    literal = add_job(env, FULL, name="kigali-west@latest", created_at="2026-11-04T00:00:00+00:00")
    older = add_job(env, FULL, name="kigali-west", created_at="2026-11-05T00:00:00+00:00")
    code, out, _ = run_cli(capsys, "status", "kigali-west@latest")
    assert code == 0 and literal in out and older not in out


@pytest.mark.parametrize("ref, message", [
    ("@latest", "'@latest': give a job name or the start of an id before @latest"),
    ("  @latest ", "'@latest': give a job name or the start of an id before @latest"),
    ("kigali-wset@latest", "no job with the name or an id starting with 'kigali-wset'"),
])
def test_a_bad_at_latest_reference_exits_2(env, capsys, ref, message):
    _two_jobs(env)
    code, out, err = run_cli(capsys, "status", ref)
    assert code == 2 and out == "" and message in err


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
