"""The AOI's "looking_glass" member (the job's imagery source and model, written by submit):
read with the AOI, and every malformed form an AOI error."""

from __future__ import annotations

import json

import pytest

from looking_glass.tiling.aoi import AoiError, parse_aoi

POLYGON = {"type": "Polygon", "coordinates": [[[30.06, -1.95], [30.0625, -1.95], [30.0625, -1.948], [30.06, -1.948], [30.06, -1.95]]]}


def aoi(member) -> bytes:
    return json.dumps({"type": "Feature", "properties": {}, "geometry": POLYGON, "looking_glass": member}).encode()


def test_the_inputs_are_read_with_the_aoi():
    parsed = parse_aoi(aoi({"imagery": "city-2024", "model": "s3://r/registry/m/2/model.keras", "rerun": "x"}))
    assert (parsed.imagery, parsed.model) == ("city-2024", "s3://r/registry/m/2/model.keras")
    plain = parse_aoi(json.dumps(POLYGON).encode())
    assert (plain.imagery, plain.model) == (None, "")


@pytest.mark.parametrize("member, message", [
    ("city", "member 'looking_glass' must be an object"),
    ({"imagery": "https://evil/{z}/{x}/{y}.png"}, "looking_glass.imagery 'https://evil/{z}/{x}/{y}.png' is not an imagery source name"),
    ({"imagery": 5}, "looking_glass.imagery '5' is not an imagery source name"),
    ({"model": ["a"]}, "looking_glass.model must be text"),
])
def test_malformed_inputs_are_aoi_errors(member, message):
    with pytest.raises(AoiError) as err:
        parse_aoi(aoi(member))
    assert message in str(err.value)
