"""``looking-glass status`` text: labels aligned however long (``earlier_worker_error``), long
values (a worker error is up to 1,000 characters) cut with a pointer to ``--json``."""

from looking_glass.cli.status_lines import REASON_CHARS, STATUS_VALUE_CHARS, status_lines

ERROR = "AWS Batch job b-1: 2 worker(s) failed (" + "CannotPullContainerError: pull access denied " * 20 + ")"


def _info(**extra):
    return {"job_id": "feedface", "status": "RUNNING", "tiles_total": 4, "tile_failure_reasons": {}, **extra}


def test_every_value_starts_in_one_column_and_a_long_one_is_cut_with_a_pointer_to_json():
    lines = status_lines(_info(earlier_worker_error=ERROR, worker_jobs=["b-1", "b-2"],
                               tile_failure_reasons={"HTTP 500 " * 60: 3}), "feedface")
    labels = {line.split()[0] for line in lines[:-1]}
    assert {"job_id", "status", "earlier_worker_error", "worker_jobs", "tile"} <= labels
    column = len("earlier_worker_error") + 1
    for line in lines[:-1]:
        assert line[column - 1] == " " and line[column] != " " or line.startswith("tile failures"), line
        assert len(line) <= column + (9 + REASON_CHARS if line.startswith("tile failures") else STATUS_VALUE_CHARS), line
    (error,) = [line for line in lines if line.startswith("earlier_worker_error")]
    assert error.endswith("\u2026") and error[column:].startswith("AWS Batch job b-1: 2 worker(s) failed")
    assert lines[-1] == (f"(values longer than {STATUS_VALUE_CHARS} characters are cut; "
                         "`looking-glass status feedface --json` prints them whole)")


def test_short_values_are_whole_and_no_pointer_is_printed():
    lines = status_lines(_info(worker_error="worker exited with status 2 (error)\x1b[31m"), "my-job")
    assert lines[0] == "job_id".ljust(len("earlier_worker_error")) + " feedface"
    (error,) = [line for line in lines if line.startswith("worker_error")]
    assert error.endswith("worker exited with status 2 (error)\\x1b[31m")  # a terminal escape is shown, not run
    assert not any("--json" in line for line in lines)


def test_the_retry_note_is_the_projects_own_sentence_and_stays_whole():
    lines = status_lines(_info(retry_reason="tile 18/1/2: ConnectionError after 4 attempts " * 5,
                               retry_at="2026-11-30T12:00:00+00:00"), "feedface")
    (note,) = [line for line in lines if line.startswith("retrying")]
    assert len(note) > len("earlier_worker_error") + 1 + STATUS_VALUE_CHARS and note.endswith("#tile-outcomes")
    assert not any("--json" in line for line in lines)


def test_the_model_is_named_id_slash_version_as_jobs_names_it_with_the_uri_below():
    from looking_glass.model.registry import model_label

    uri = "s3://looking-glass-masks/registry/deeplabv3plus-mobilenetv2a035-synthetic/3/model.keras"
    lines = {line.split()[0]: line.split(None, 1)[1] for line in status_lines(_info(model=uri), "j")}
    assert lines["model"] == "deeplabv3plus-mobilenetv2a035-synthetic/3" == model_label(uri)
    assert lines["model_uri"] == uri
    lines = {line.split()[0]: line.split(None, 1)[1] for line in status_lines(_info(model=""), "j")}
    assert lines["model"] == "default" and "model_uri" not in lines  # the deployment's own model
    lines = {line.split()[0]: line.split(None, 1)[1] for line in status_lines(_info(model="/models/x.keras"), "j")}
    assert lines["model"] == "/models/x.keras" and "model_uri" not in lines  # no shorter name: shown once


def test_a_tile_failure_reason_keeps_what_to_do_and_only_a_remote_texts_length_is_cut():
    """The worker's reasons end in what to do: whole at their real length (~230 characters);
    a longer text (a remote error's) is cut at REASON_CHARS with the pointer to --json."""
    reason = ("imagery source 'city' was redefined after this job was submitted (digest 0acd0ca45cbddba1 != "
              "89040017ecc78892): submit the AOI again for a job on the new definition")
    lines = status_lines(_info(tile_failure_reasons={reason: 3}), "feedface")
    assert [line.split(None, 2)[2] for line in lines if line.startswith("tile failures")] == [f"3 x {reason}"]
    assert not any("--json" in line for line in lines)
    lines = status_lines(_info(tile_failure_reasons={"x" * (REASON_CHARS + 1): 1}), "feedface")
    (failure,) = [line for line in lines if line.startswith("tile failures")]
    assert failure.endswith("x\u2026") and "--json" in lines[-1]
