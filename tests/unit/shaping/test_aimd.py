"""The AIMD controller's verdicts on single windows (convergence over many windows:
tests/unit/shaping/test_adaptive.py)."""

from __future__ import annotations

import pytest

from engine.config.shaping import ShapingSettings
from engine.shaping.aimd import MAX_CARRY, AimdState, Ceiling, Judgement, Verdict, Window, judge

S = ShapingSettings(decrease=0.5)  # +1 conn, +10 % rate, 60 s, 5 %, 20 samples
T0 = 1_000_000.0
END = T0 + 60


def window(
    delivered: int = 0,
    replies: int = 0,
    throttled: int = 0,
    txn: int = 0,
    in_use: int | None = None,
) -> Window:
    w = Window(start=T0)
    w.add(delivered, replies, throttled, txn, in_use)
    return w


def verdict(state: AimdState, w: Window, ceiling: Ceiling, now: float = END) -> Judgement:
    return judge(state, w, ceiling, S, now)


def test_transaction_throttling_cuts_connections_and_rate_from_what_was_accepted() -> None:
    # 6 000 accepted in a minute (100/s), 600 refused at RCPT: 9 % >= 5 %.
    j = verdict(AimdState(), window(6000, 600, 600, 600, in_use=20), Ceiling(20, None))
    assert j.verdict is Verdict.DECREASE
    assert j.state.connections == 10
    assert j.state.rate == pytest.approx(90.0)  # RATE_KEEP x the 100/s the receiver took
    assert j.state.scale == pytest.approx(100.0)
    assert (j.state.changed, "600 of 6600 replies throttling (9%)" in j.state.reason) == (END, True)


def test_connection_throttling_cuts_connections_only() -> None:
    j = verdict(AimdState(), window(1000, 100, 100, 0, in_use=8), Ceiling(8, None))
    assert j.verdict is Verdict.DECREASE
    assert (j.state.connections, j.state.rate) == (4, None)


def test_cut_is_at_least_one_connection_and_never_below_the_floors() -> None:
    j = verdict(AimdState(connections=3), window(100, 50, 50, 0), Ceiling(20, None))
    assert j.state.connections == 1  # min(3 - 1, floor(1.5))
    j = verdict(AimdState(connections=2), window(100, 50, 50, 0), Ceiling(20, None))
    assert j.state.connections == 1  # min(2 - 1, 1)
    floor = AimdState(connections=1, rate=S.floor_rate)
    j = verdict(floor, window(100, 50, 50, 50), Ceiling(20, None))
    assert (j.verdict, j.state) == (Verdict.HOLD, floor)  # nothing left to cut: no change


def test_rate_cut_never_raises_a_lower_rate_limit() -> None:
    # Limited to 10/s, yet 6 000 went through in a minute (a batch's slack): cut from 10.
    j = verdict(AimdState(rate=10.0), window(6000, 600, 600, 600), Ceiling(20, None))
    assert j.state.rate == pytest.approx(9.0)


def test_too_few_samples_carry_on_then_are_dropped() -> None:
    w = window(5, 5, 5, 5)  # 50 % throttled, but 10 samples < 20
    assert verdict(AimdState(), w, Ceiling(20, None)).verdict is Verdict.CARRY
    late = T0 + MAX_CARRY * S.window
    assert verdict(AimdState(), w, Ceiling(20, None), now=late).verdict is Verdict.HOLD


def test_an_empty_window_holds() -> None:
    assert verdict(AimdState(connections=3), window(), Ceiling(20, None)).verdict is Verdict.HOLD


def test_clean_window_in_use_raises_additively() -> None:
    state = AimdState(connections=10, rate=50.0, scale=100.0)
    j = verdict(state, window(2940, 0, in_use=10), Ceiling(20, None))  # 49/s of 50: in use
    assert j.verdict is Verdict.INCREASE
    assert (j.state.connections, j.state.rate) == (11, pytest.approx(60.0))  # + 0.1 x 100
    assert j.state.scale == 100.0


def test_rate_step_is_a_share_of_the_maximum_rate_when_there_is_one() -> None:
    j = verdict(AimdState(rate=50.0), window(2940), Ceiling(20, 200.0))
    assert j.state.rate == pytest.approx(70.0)  # + 0.1 x 200


def test_limits_that_are_not_used_are_not_raised() -> None:
    state = AimdState(connections=10, rate=50.0, scale=100.0)
    # 4 of 10 connections, 20/s of 50/s: neither is binding.
    j = verdict(state, window(1200, 0, in_use=4), Ceiling(20, None))
    assert (j.verdict, j.state) == (Verdict.HOLD, state)


def test_without_in_use_a_busy_window_counts_as_using_its_connections() -> None:
    j = verdict(AimdState(connections=5), window(S.min_samples), Ceiling(20, None))
    assert j.state.connections == 6
    j = verdict(AimdState(connections=5), window(S.min_samples - 1), Ceiling(20, None))
    assert j.verdict is Verdict.HOLD


def test_hysteresis_between_half_and_whole_share_holds() -> None:
    state = AimdState(connections=10, rate=50.0, scale=100.0)
    # 3 % throttled inside transactions: not enough to cut, too much to raise.
    j = verdict(state, window(2940, 91, 91, 91, in_use=10), Ceiling(20, None))
    assert (j.verdict, j.state) == (Verdict.HOLD, state)


def test_connection_refusals_do_not_hold_the_rate_back() -> None:
    # 3 % refused at connect: connections hold, the rate (clean in transactions) climbs.
    state = AimdState(connections=10, rate=50.0, scale=100.0)
    j = verdict(state, window(2940, 91, 91, 0, in_use=10), Ceiling(20, None))
    assert j.verdict is Verdict.INCREASE
    assert (j.state.connections, j.state.rate) == (10, pytest.approx(60.0))


def test_back_at_the_maximum_is_stored_as_none() -> None:
    j = verdict(AimdState(connections=19, rate=195.0), window(11700, in_use=19), Ceiling(20, 200.0))
    assert j.verdict is Verdict.INCREASE
    assert j.state == AimdState(changed=END, reason=j.state.reason)
    assert j.state.at_ceiling and j.state.scale is None


def test_a_lowered_maximum_wins_and_a_raised_one_applies_at_once() -> None:
    state = AimdState(connections=8, rate=80.0)
    assert state.limits(Ceiling(5, 50.0)) == (5, 50.0)
    assert state.limits(Ceiling(20, None)) == (8, 80.0)
    assert AimdState().limits(Ceiling(30, 300.0)) == (30, 300.0)


def test_unlimited_rate_without_deliveries_is_left_alone() -> None:
    # Every RCPT refused, nothing accepted: there is no rate to halve; connections go.
    j = verdict(AimdState(), window(0, 100, 100, 100), Ceiling(10, None))
    assert (j.state.connections, j.state.rate) == (5, None)
