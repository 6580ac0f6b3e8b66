import json

import numpy as np
import pytest

from looking_glass.pipeline.workunits import MalformedMessage, pack_runs, parse_work_unit

JOB = "0123456789abcdef01234567"


def test_packing_splits_runs_and_keeps_every_tile_once():
    runs = np.array([[10, 0, 150], [11, 5, 7], [12, 0, 1]])
    units = list(pack_runs(JOB, 18, runs, 64))
    assert [u.tile_count for u in units] == [64, 64, 25]
    tiles = [t for u in units for t in u.tiles()]
    assert len(tiles) == len(set(tiles)) == 153
    assert set(tiles) == {(x, y, 18) for y, a, b in runs for x in range(a, b)}


def test_round_trip_through_json():
    unit = next(pack_runs(JOB, 18, np.array([[3, 4, 9]]), 64))
    assert parse_work_unit(unit.to_json()) == unit


def test_the_imagery_digest_travels_with_every_unit():
    units = list(pack_runs(JOB, 18, np.array([[3, 4, 9]]), 2, "city", "0123456789abcdef"))
    assert len(units) == 3 and {u.imagery_digest for u in units} == {"0123456789abcdef"}
    assert all(parse_work_unit(u.to_json()) == u for u in units)
    assert json.loads(units[0].to_json())["digest"] == "0123456789abcdef"
    # no digest known (""): the member is left out, as before digests
    (plain,) = pack_runs(JOB, 18, np.array([[3, 4, 9]]), 64, "city", "")
    assert plain.imagery_digest is None and "digest" not in json.loads(plain.to_json())


def test_a_message_from_before_digests_is_still_accepted():
    body = json.dumps({"v": 1, "job_id": JOB, "z": 18, "runs": [[3, 4, 9]], "imagery": "city"})
    unit = parse_work_unit(body)
    assert unit.imagery == "city" and unit.imagery_digest is None and unit.tile_count == 5


@pytest.mark.parametrize(
    "body, reason",
    [
        ("not json", "not JSON"),
        ("[]", "not a JSON object"),
        (json.dumps({"v": 2, "job_id": JOB, "z": 18, "runs": [[0, 0, 1]]}), "version"),
        (json.dumps({"v": 1, "job_id": "../etc", "z": 18, "runs": [[0, 0, 1]]}), "invalid job_id"),
        (json.dumps({"v": 1, "job_id": JOB, "z": 40, "runs": [[0, 0, 1]]}), "invalid zoom"),
        (json.dumps({"v": 1, "job_id": JOB, "z": 18, "runs": []}), "non-empty"),
        (json.dumps({"v": 1, "job_id": JOB, "z": 18, "runs": [[0, 5, 5]]}), "outside zoom"),
        (json.dumps({"v": 1, "job_id": JOB, "z": 2, "runs": [[0, 0, 9]]}), "outside zoom"),
        (json.dumps({"v": 1, "job_id": JOB, "z": 18, "runs": [[0, 0.5, 1]]}), "integers"),
        (json.dumps({"v": 1, "job_id": JOB, "z": 18, "runs": [[0, 0, 20000]]}), "exceed"),
        (json.dumps({"v": 1, "job_id": JOB, "z": 18, "runs": [[0, 0, 1]], "digest": "0123"}), "invalid imagery digest"),
        (json.dumps({"v": 1, "job_id": JOB, "z": 18, "runs": [[0, 0, 1]], "digest": "0123456789ABCDEF"}),
         "invalid imagery digest"),
        (json.dumps({"v": 1, "job_id": JOB, "z": 18, "runs": [[0, 0, 1]], "digest": 12345}), "invalid imagery digest"),
        (json.dumps({"v": 1, "job_id": JOB, "z": 18, "runs": [[0, 0, 1]], "digest": ""}), "invalid imagery digest"),
    ],
)
def test_malformed_messages_are_refused_with_a_reason(body, reason):
    with pytest.raises(MalformedMessage) as err:
        parse_work_unit(body)
    assert reason in str(err.value)
