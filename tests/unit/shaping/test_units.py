"""Rates and spans as shaping data writes them, KumoMTA's spellings included."""

from __future__ import annotations

import pytest

from engine.shaping.units import parse_rate, parse_span


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


@pytest.mark.parametrize(
    ("text", "per_second"),
    [
        ("10/min", 10 / 60),
        ("1,000/hr", 1000 / 3600),
        ("100/s", 100.0),
        ("5/10m", 5 / 600),
        ("10/minute", 10 / 60),
        ("20000/h", 20000 / 3600),
    ],
)
def test_rates(text: str, per_second: float) -> None:
    assert parse_rate(text) == pytest.approx(per_second)


@pytest.mark.parametrize("text", ["10", "10/", "/s", "ten/min", "10/fortnight"])
def test_bad_rates(text: str) -> None:
    with pytest.raises(ValueError, match=r"rate like|length of time"):
        parse_rate(text)


def test_a_zero_rate_is_refused() -> None:
    with pytest.raises(ValueError, match="above zero"):
        parse_rate("0/s")
