"""Decimal -> JSON: one rule for every output of DynamoDB numbers."""

import json
from decimal import Decimal

import numpy as np

from looking_glass.pipeline.store import json_value


def test_decimals_become_ints_or_floats():
    assert json_value(Decimal("5")) == 5 and isinstance(json_value(Decimal("5")), int)
    assert json_value(Decimal("12.5")) == 12.5
    # Digits after the point keep a number a float (an area stays an area).
    assert isinstance(json_value(Decimal("12.000")), float) and json_value(Decimal("0.000")) == 0.0
    assert json_value(np.int64(3)) == 3 and isinstance(json_value(np.float32(0.5)), float)


def test_nested_values_are_converted_and_others_left_alone():
    doc = {"a": [Decimal("1"), {"b": Decimal("2.25")}], "s": "x", "n": None}
    assert json.dumps(json_value(doc)) == '{"a": [1, {"b": 2.25}], "s": "x", "n": null}'


def test_figures_and_query_use_the_same_rule():
    from looking_glass.results import figures, query

    assert figures.plain is json_value
    assert query.json_value is json_value
