"""The typed parsers shared by environment variables, CDK context, hyperparameters and options:
each source keeps its own wording, and every message names the key, the value and the range."""

import math
import re

import pytest

from looking_glass.errors import LookingGlassError
from looking_glass.runtime.parsing import (
    ARGUMENT,
    ParseError,
    Parsers,
    Variables,
    hyperparameter_parsers,
    span,
    unquote,
)


class HpError(ParseError):
    """Stands in for the training's HyperparameterError."""


CONTEXT = Parsers()
HP = hyperparameter_parsers(HpError)
OPTION = Parsers(ParseError, ARGUMENT)


def message(parse, *args, **kwargs) -> str:
    with pytest.raises(ParseError) as err:
        parse(*args, **kwargs)
    return str(err.value)


def test_parse_errors_are_looking_glass_and_value_errors():
    with pytest.raises(ValueError):
        CONTEXT.integer("k", "x")
    with pytest.raises(LookingGlassError) as err:
        HP.integer("k", "x")
    assert isinstance(err.value, HpError) and err.value.exit_code == 2  # bad input


def test_span():
    assert span(1, 1024) == "[1, 1024]"
    assert span(0, None, lo_open=True) == "(0, inf]"
    assert span(None, 1, hi_open=True) == "[-inf, 1)"


def test_unquote():
    assert unquote('"xception"') == "xception"
    assert unquote(' "a" ') == "a"
    assert unquote('"unterminated\\"') == '"unterminated\\"'
    assert unquote(5) == 5


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("5", 5), (" 5 ", 5), (5, 5), (5.0, 5), ("1_000", 1000)],
)
def test_integer_accepts(raw, expected):
    assert CONTEXT.integer("k", raw, 0, 10_000) == expected


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        ("x", "k='x' is not an integer"),
        ("5.0", "k='5.0' is not an integer"),
        (True, "k=True is not an integer"),
        (5.5, "k=5.5 is not an integer"),
        ([1], "k=[1] is not an integer"),
        ("11", "k=11 is outside [0, 10]"),
        (-1, "k=-1 is outside [0, 10]"),
    ],
)
def test_integer_refuses_with_key_value_and_range(raw, text):
    assert message(CONTEXT.integer, "k", raw, 0, 10) == text


def test_numbers():
    assert CONTEXT.number("k", "0.5", 0.0, 1.0) == 0.5
    assert message(CONTEXT.number, "k", "1.5", 0.0, 1.0) == "k=1.5 is outside [0.0, 1.0]"
    assert message(CONTEXT.number, "k", "many", 0.0, 1.0) == "k='many' is not a number"
    assert message(CONTEXT.number, "k", "nan") == "k='nan' is not a finite number"
    assert message(CONTEXT.number, "k", "nan", 0.0, 1.0, finite=False) == "k=nan is outside [0.0, 1.0]"
    assert CONTEXT.number("k", "inf", 0, None, True, finite=False) == math.inf
    assert message(CONTEXT.number, "k", "0", 0, 1, True, True) == "k=0.0 is outside (0, 1)"


@pytest.mark.parametrize("raw", [True, "true", " TRUE ", "1", "yes"])
def test_boolean_true(raw):
    assert CONTEXT.boolean("k", raw) is True


@pytest.mark.parametrize("raw", [False, "false", "No", "0"])
def test_boolean_false(raw):
    assert CONTEXT.boolean("k", raw) is False


def test_boolean_refusals():
    assert message(CONTEXT.boolean, "k", "maybe") == "k='maybe' is not a boolean (true/false)"
    assert message(CONTEXT.boolean, "k", 1) == "k=1 is not a boolean (true/false)"  # JSON numbers are not flags
    assert HP.boolean("k", 1) is True  # ... but SageMaker's loosely typed values are


def test_choice_text_and_lists():
    assert CONTEXT.choice("k", "local", ("batch", "local")) == "local"
    assert message(CONTEXT.choice, "k", "Local", ("batch", "local")) == "k='Local' is not one of batch, local"
    assert CONTEXT.text("k", None) == "" and CONTEXT.text("k", " a ") == "a"
    assert message(CONTEXT.text, "k", 3) == "k=3 is not a string"
    assert CONTEXT.text_list("k", "g5.xlarge, g6.xlarge") == ["g5.xlarge", "g6.xlarge"]
    assert message(CONTEXT.text_list, "k", [1]) == "k=[1] is not a list of strings"
    assert message(CONTEXT.text_list, "k", []) == "k is empty"
    arn = re.compile(r"^arn:")
    assert CONTEXT.matching("k", "", arn, "an ARN") == ""
    assert CONTEXT.matching("k", "arn:x", arn, "an ARN") == "arn:x"
    assert message(CONTEXT.matching, "k", "x", arn, "an ARN") == "k='x' is not an ARN"


def test_bands():
    assert CONTEXT.bands("k", "") is None and CONTEXT.bands("k", []) is None
    assert CONTEXT.bands("k", "3, 2,1") == (3, 2, 1) and CONTEXT.bands("k", [1]) == (1,)
    assert message(CONTEXT.bands, "k", "a,b") == "k='a,b' is not a comma-separated list of band numbers"
    assert message(CONTEXT.bands, "k", ["a"]) == "k=['a'] is not a list of band numbers"
    assert message(CONTEXT.bands, "k", "1,2") == "k='1,2': give 1 band (grey) or 3 bands (R,G,B), numbered from 1"
    assert "numbered from 1" in message(CONTEXT.bands, "k", "0")


def test_hyperparameter_wording_and_leniency():
    assert HP.integer("epochs", '"5"', 1) == 5
    assert HP.integer("epochs", "1e3", 1) == 1000 and HP.integer("epochs", 5.0, 1) == 5
    assert message(HP.integer, "epochs", "5.5", 1) == "hyperparameter 'epochs': expected an integer, got '5.5'"
    assert message(HP.integer, "epochs", True) == "hyperparameter 'epochs': expected an integer, got True"
    assert message(HP.integer, "epochs", "0", 1) == "hyperparameter 'epochs': 0 is outside [1, inf]"
    assert message(HP.number, "lr", "0", 0, None, True) == "hyperparameter 'lr': 0.0 is outside (0, inf]"
    assert message(HP.number, "lr", "x") == "hyperparameter 'lr': expected a number, got 'x'"
    assert message(HP.number, "lr", "inf") == "hyperparameter 'lr': expected a finite number, got 'inf'"
    assert message(HP.boolean, "augment", "maybe") == "hyperparameter 'augment': expected true or false, got 'maybe'"
    backbone = HP.one_of(("mobilenetv2", "xception"))
    assert backbone("backbone", ' "XCEPTION" ') == "xception"
    assert message(backbone, "backbone", "resnet") == (
        "hyperparameter 'backbone': 'resnet' is not one of ['mobilenetv2', 'xception']"
    )
    stride = HP.one_of((8, 16), int)
    assert stride("output_stride", "8") == 8
    assert message(stride, "output_stride", "12") == "hyperparameter 'output_stride': '12' is not one of [8, 16]"
    assert HP.required_text("model_id", " m ") == "m"
    assert message(HP.required_text, "model_id", "  ") == "hyperparameter 'model_id': expected a non-empty string, got ''"


def test_option_wording():
    assert message(OPTION.integer, "", "x", 1) == "'x' is not an integer"
    assert message(OPTION.integer, "", "0", 1) == "0 must be at least 1"
    assert message(OPTION.number, "", "0", 0, None, True) == "0.0 must be greater than 0"
    assert message(OPTION.integer, "zoom", "40", 0, 24) == "zoom 40 is outside 0..24"
    assert message(OPTION.number, "", "x") == "'x' is not a number"


def test_variables_default_when_unset_or_empty():
    env = Variables({"A": "", "B": "7", "C": "true", "D": "local", "E": "3,2,1"}, HpError)
    assert env.integer("A", 5, 1, 10) == 5 and env.integer("B", 5, 1, 10) == 7
    assert env.number("MISSING", 0.5, 0.0, 1.0) == 0.5 and env.boolean("C", False) is True
    assert env.choice("D", "batch", ("batch", "local")) == "local" and env.choice("A", "batch", ("batch",)) == "batch"
    assert env.bands("E") == (3, 2, 1) and env.bands("A") is None
    assert env.text("B") == "7" and env.text("MISSING", "d") == "d"
    with pytest.raises(HpError, match=r"^B=7 is outside \[1, 5\]$"):
        env.integer("B", 1, 1, 5)
    with pytest.raises(HpError, match=r"^B=7\.0 is outside \[0\.0, 1\.0\]$"):
        env.number("B", 0.5, 0.0, 1.0)
