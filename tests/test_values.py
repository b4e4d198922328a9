"""The one number coercion (labbook.readers.values): each variant's rule, and the readers
that use it agreeing on the same text."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from labbook.readers.files import read_csv_metrics, read_jsonl_metrics
from labbook.readers.values import (
    finite_number,
    json_number,
    number,
    number_or_text,
    parse_value,
    sql_number,
)

NAN = float("nan")


def same(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return (math.isnan(a) and math.isnan(b)) or a == b


@pytest.mark.parametrize(
    ("value", "strict", "finite", "json", "text", "sql"),
    [
        (3, 3.0, 3.0, 3.0, 3.0, 3.0),
        (0.5, 0.5, 0.5, 0.5, 0.5, 0.5),
        (True, None, None, None, None, 1.0),
        (False, None, None, None, None, 0.0),
        (NAN, NAN, None, NAN, NAN, NAN),
        (float("-inf"), float("-inf"), None, float("-inf"), float("-inf"), float("-inf")),
        (10**400, None, None, None, None, None),  # too large for a float: no number
        ("0.6934", None, None, None, 0.6934, None),
        (" 1e-3 ", None, None, None, 1e-3, None),
        (".5", None, None, None, 0.5, None),
        ("nan", None, None, NAN, NAN, None),
        ("NaN", None, None, NAN, NAN, None),
        ("+inf", None, None, float("inf"), float("inf"), None),
        ("-Infinity", None, None, float("-inf"), float("-inf"), None),
        ("INF", None, None, float("inf"), float("inf"), None),
        ("true", None, None, None, None, None),
        ("3/10", None, None, None, None, None),
        ("1_000", None, None, None, None, None),
        ("", None, None, None, None, None),
        (None, None, None, None, None, None),
        ([1], None, None, None, None, None),
    ],
)
def test_variants(value, strict, finite, json, text, sql) -> None:
    assert same(number(value), strict)
    assert same(finite_number(value), finite)
    assert same(json_number(value), json)
    assert same(number_or_text(value), text)
    assert same(sql_number(value), sql)


def test_parse_value() -> None:
    assert parse_value("0.01") == 0.01
    assert parse_value("3") == 3 and isinstance(parse_value("3"), int)
    assert parse_value("true") is True
    assert parse_value("null") is None
    assert parse_value("'a b'") == "a b"
    assert parse_value("adam") == "adam"


def test_jsonl_nonfinite_text_any_case(tmp_path: Path) -> None:
    """JSON writers spell NaN/Infinity in several ways: every reader takes all of them."""
    p = tmp_path / "metrics.jsonl"
    p.write_text(
        '{"step": 1, "loss": "NaN", "acc": "0.5"}\n'
        '{"step": 2, "loss": "INF", "acc": 0.6}\n'
        '{"step": 3, "loss": " -infinity ", "acc": 0.7}\n'
    )
    metrics, truncated = read_jsonl_metrics(p)
    assert not truncated
    loss = [pt.value for pt in metrics["loss"]]
    assert math.isnan(loss[0]) and loss[1:] == [float("inf"), float("-inf")]
    assert [pt.step for pt in metrics["acc"]] == [2, 3]  # "0.5" in JSON is text, no metric


def test_csv_cells_are_numbers_or_text(tmp_path: Path) -> None:
    p = tmp_path / "metrics.csv"
    p.write_text("step,loss,flag,lr\n0,nan,True,1e-3\n1, 0.5 ,False,.5\n2,,x,1_000\n")
    metrics, _ = read_csv_metrics(p)
    assert "flag" not in metrics
    loss = [pt.value for pt in metrics["loss"]]
    assert math.isnan(loss[0]) and loss[1] == 0.5 and len(loss) == 2
    assert [pt.value for pt in metrics["lr"]] == [1e-3, 0.5]
