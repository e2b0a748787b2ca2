"""engine.shaping.rates: the supervisor's GCRA table across holders, on a fake clock."""

from __future__ import annotations

import pytest

from engine.shaping.gcra import parse_rate
from engine.shaping.rates import RateTable

R = parse_rate("10/s")


def test_two_holders_interleave_without_overlap() -> None:
    t = RateTable(horizon=1.0)
    a = t.grant(["s#msg"], [R], want=5, now=0.0, holder=0)
    b = t.grant(["s#msg"], [R], want=5, now=0.0, holder=1)
    assert a.times == pytest.approx((0.0, 0.1, 0.2, 0.3, 0.4))
    assert b.times == pytest.approx((0.5, 0.6, 0.7, 0.8, 0.9))


def test_unused_instants_come_back_only_from_the_newest_grant() -> None:
    t = RateTable(horizon=1.0)
    a = t.grant(["s#msg"], [R], want=5, now=0.0, holder=0)
    t.give_back(["s#msg"], list(a.times[2:]), now=0.15, holder=0)
    again = t.grant(["s#msg"], [R], want=1, now=0.15, holder=1)
    assert again.times == pytest.approx((0.2,))  # the first unused instant, reused
    b = t.grant(["s#msg"], [R], want=1, now=0.15, holder=1)
    t.give_back(["s#msg"], list(again.times), now=0.15, holder=1)  # not the newest: kept
    c = t.grant(["s#msg"], [R], want=1, now=0.15, holder=0)
    assert c.times[0] > b.times[0]


def test_a_denied_request_says_when_and_changes_nothing() -> None:
    t = RateTable(horizon=0.5)
    slow = parse_rate("1/min")
    assert t.grant(["k"], [slow], want=1, now=0.0, holder=0).times == (0.0,)
    denied = t.grant(["k"], [slow], want=1, now=1.0, holder=0)
    assert denied.times == () and denied.retry_at == pytest.approx(60.0)
    assert t.grant(["k"], [slow], want=1, now=60.0, holder=1).times == (60.0,)


def test_idle_keys_are_forgotten() -> None:
    t = RateTable()
    t.grant(["a"], [R], want=1, now=0.0, holder=0)
    t.grant(["b"], [R], want=1, now=5.0, holder=0)
    assert t.expire(now=5.5) == 1
    assert len(t) == 1
