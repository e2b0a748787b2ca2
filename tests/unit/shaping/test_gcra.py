"""engine.shaping.gcra: rate specs and conforming schedules, on a fake clock."""

from __future__ import annotations

import itertools

import pytest

from engine.shaping.gcra import Rate, RateError, first_conforming, parse_rate, schedule


@pytest.mark.parametrize(
    ("text", "count", "period"),
    [
        ("100/s", 100, 1),
        ("50/min", 50, 60),
        ("20000/h", 20000, 3600),
        ("1,000/hr", 1000, 3600),
        ("5/10s", 5, 10),
        ("3/d", 3, 86400),
        (" 2.5 / minute ", 2.5, 60),
    ],
)
def test_specs(text: str, count: float, period: float) -> None:
    r = parse_rate(text)
    assert (r.count, r.period, r.burst) == (count, period, 1)
    assert parse_rate(str(r)) == r


@pytest.mark.parametrize("text", ["", "100", "100/", "/s", "100/fortnight", "0/s", "-1/s", "x/s"])
def test_bad_specs_say_what_is_expected(text: str) -> None:
    with pytest.raises(RateError, match=r"100/s|positive"):
        parse_rate(text)


def test_instants_are_spaced_by_the_interval_and_bounded_by_the_horizon() -> None:
    r = parse_rate("50/s")
    times, (tat,) = schedule([0.0], [r], now=10.0, want=100, horizon=1.0)
    assert times[0] == 10.0
    assert all(b - a == pytest.approx(0.02) for a, b in itertools.pairwise(times))
    assert len(times) == 51  # 10.00 .. 11.00 inclusive
    assert tat == pytest.approx(11.02)
    # The next request continues where the last one ended: no burst at the seam.
    more, _ = schedule([tat], [r], now=10.5, want=5, horizon=1.0)
    assert more[0] == pytest.approx(11.02)


def test_nothing_granted_says_when() -> None:
    r = parse_rate("1/min")
    times, tats = schedule([100.0], [r], now=0.0, want=1, horizon=1.0)
    assert times == [] and tats == [100.0]
    assert first_conforming([100.0], [r], now=0.0) == 100.0


def test_every_rate_of_a_request_holds_at_once() -> None:
    site, provider = parse_rate("10/s"), parse_rate("4/s")
    times, _ = schedule([0.0, 0.0], [site, provider], now=0.0, want=8, horizon=10.0)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) == pytest.approx(0.25)  # the stricter rate decides


def test_any_window_holds_the_limit() -> None:
    """Burst 1: at most `count` instants in any window of one period."""
    r = parse_rate("20/s")
    tat, times = 0.0, []
    now = 0.0
    for _ in range(30):  # ragged requests, as several workers would make them
        got, (tat,) = schedule([tat], [r], now=now, want=7, horizon=0.5)
        times += got
        now += 0.13
    times.sort()
    for i, t in enumerate(times):
        assert sum(1 for u in times[i:] if u < t + 1.0 - 1e-9) <= 20  # float sums


def test_a_burst_allows_that_many_at_once() -> None:
    r = Rate(10, 1, burst=3)
    times, _ = schedule([0.0], [r], now=5.0, want=5, horizon=0.0)
    assert times == [5.0, 5.0, 5.0]
    assert r.scaled(5.0) == Rate(5.0, 1, 3)
