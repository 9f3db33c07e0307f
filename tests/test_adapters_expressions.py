"""The safe expression language of trial selections and derived columns."""

from __future__ import annotations

import numpy as np
import pytest

from b2m_neuro.adapters.expressions import ExpressionError, check_expression, evaluate

COLUMNS = {
    "rt": np.array([0.4, 1.5, np.nan, 2.5]),
    "code": np.array([31, 36, 0, 34]),
    "phase": np.array(["learn", "recog", "recog", "recog"]),
    "clip": np.array(["c1", "", "", ""]),
    "frame": np.array(["", "f1", "f2", "f3"]),
}


def run(text, **options):
    return evaluate(text, COLUMNS.__getitem__, **options).tolist()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("phase == 'recog' and code >= 34", [False, True, False, True]),
        ("phase == 'learn' or code in [34, 36]", [True, True, False, True]),
        ("code not in (0, 31)", [False, True, False, True]),
        ("31 < code <= 35", [False, False, False, True]),
        ("not isnan(rt) and rt < 2", [True, True, False, False]),
        ("abs(code - 35) <= 1", [False, True, False, True]),
        ("rt * 2 + 1 > 3.5", [False, True, False, True]),  # NaN compares false
        ("phase == 3", [False, False, False, False]),  # text never equals a number
        ("phase != 3", [True, True, True, True]),
        ("code > 0 and True", [True, True, False, True]),
    ],
)
def test_selections(text, expected):
    assert run(text) == expected


def test_derived_values_numbers_and_text():
    assert run("code - 30", boolean=False) == [1, 6, -30, 4]
    assert run("clip + frame", boolean=False) == ["c1", "f1", "f2", "f3"]
    assert run("phase", boolean=False) == ["learn", "recog", "recog", "recog"]
    assert check_expression("isnan(rt) or phase == 'x'") == ("phase", "rt")


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("__import__('os').system('true')", "only the functions"),
        ("open('/etc/passwd')", "only the functions"),
        ("isnan(rt, 1)", "only the functions"),
        ("abs(x=rt)", "only the functions"),
        ("rt.real > 0", "Attribute is not allowed"),
        ("COLUMNS['rt']", "Subscript is not allowed"),
        ("(lambda: 1)()", "allowed"),
        ("[c for c in code]", "ListComp is not allowed"),
        ("(code > 1) & (rt < 2)", "BitAnd is not allowed"),
        ("rt ** 2 > 1", "Pow is not allowed"),
        ("code in [rt]", "lists may hold only constants"),
        ("b'x' == phase", "constant b'x' is not allowed"),
        ("rt if code else 1", "IfExp is not allowed"),
        ("code >", "invalid syntax"),
    ],
)
def test_anything_beyond_the_language_is_refused_before_it_runs(text, words):
    with pytest.raises(ExpressionError, match=words):
        check_expression(text)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("code", "not true/false"),
        ("not code", "need comparisons"),
        ("phase > 'a' or phase < 3", "cannot order text against numbers"),
        ("phase + 1 > 2", "arithmetic needs numeric columns"),
        ("code in 3", "needs a list"),
    ],
)
def test_type_errors_are_expression_errors(text, words):
    with pytest.raises(ExpressionError, match=words):
        run(text)
