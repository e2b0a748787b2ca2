"""Lengths of time as shaping rules write them, KumoMTA's spellings included (rates:
test_gcra.py)."""

from __future__ import annotations

import pytest

from engine.shaping.units import parse_span


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90m", 5400.0),
        ("2 hours", 7200.0),
        ("30 minutes", 1800.0),
        ("1hr", 3600.0),
        ("hr", 3600.0),
        ("45s", 45.0),
        ("250ms", 0.25),  # not 250 minutes: "ms" is a unit, not "m" plus a plural "s"
        ("1.5h", 5400.0),
        ("3 secs", 3.0),
        ("1 day", 86400.0),
    ],
)
def test_spans(text: str, seconds: float) -> None:
    assert parse_span(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "10", "2 fortnights", "-1h", "1 h 2"])
def test_bad_spans(text: str) -> None:
    with pytest.raises(ValueError, match="not a length of time"):
        parse_span(text)
