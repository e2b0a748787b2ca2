"""The AIMD controller's verdicts on single windows (convergence over many windows:
tests/unit/shaping/test_adaptive.py)."""

from __future__ import annotations

import pytest

from engine.config.shaping import ShapingSettings
from engine.shaping.aimd import (
    EARLIEST,
    MAX_CARRY,
    REFUSAL_MEMORY,
    REPORT_GAP,
    AimdState,
    Ceiling,
    Judgement,
    Verdict,
    Window,
    judge,
)

S = ShapingSettings(decrease=0.5)  # +1 conn, +10 % rate, 60 s, 5 %, 20 samples
T0 = 1_000_000.0
END = T0 + 60
C20 = Ceiling(20, None)


def window(
    delivered: int = 0,
    replies: int = 0,
    throttled: int = 0,
    txn: int = 0,
    in_use: int | None = None,
    opened: int = 0,
) -> Window:
    w = Window(start=T0)
    w.add(delivered, replies, throttled, txn, in_use, opened)
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


def test_transaction_throttling_under_a_rate_limit_that_bound_cuts_the_rate_only() -> None:
    # Limited to 100/s, 100/s sent (5 700 accepted, 300 refused at RCPT: 5 %): the rate
    # limit is what the receiver objects to, and it took 95 % of it.  Connections stay,
    # unless some were refused at connect too (one fewer).
    j = verdict(AimdState(rate=100.0), window(5700, 300, 300, 300, in_use=8), Ceiling(8, None))
    assert j.verdict is Verdict.DECREASE
    assert (j.state.connections, j.state.rate) == (None, pytest.approx(100 * 0.95))
    j = verdict(
        AimdState(rate=100.0), window(5700, 310, 310, 300, in_use=8, opened=40), Ceiling(8, None)
    )
    assert (j.state.connections, j.state.rate) == (7, pytest.approx(100 * 0.95))
    # Limited to 200/s but sending 100/s: the limit did not bind, both are cut (the rate
    # by at most `decrease`, 0.5 here).
    j = verdict(AimdState(rate=200.0), window(5700, 300, 300, 300, in_use=8), Ceiling(8, None))
    assert (j.state.connections, j.state.rate) == (4, pytest.approx(100.0))


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
    # Limited to 10/s, yet 6 000 went through in a minute (a batch's slack): cut to
    # the limit less the share refused (10 x 6000/6600), not to the 100/s accepted.
    j = verdict(AimdState(rate=10.0), window(6000, 600, 600, 600), Ceiling(20, None))
    assert j.state.rate == pytest.approx(10 * 6000 / 6600)


def test_a_window_covers_up_to_its_newest_report_while_reports_come_in() -> None:
    w = Window(start=T0)
    w.add(380, 0, 0, 0, None, at=T0 + 1.9)
    assert w.elapsed(T0 + 2.1) == pytest.approx(1.9)  # between two reports: not 2.1
    assert w.elapsed(T0 + 1.9 + REPORT_GAP + 0.1) == pytest.approx(3.0)  # reports stopped
    assert w.elapsed(T0 + 0.2) == EARLIEST
    assert window(380).elapsed(T0 + 2.1) == pytest.approx(2.1)  # no report time: up to now


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


def test_between_half_and_whole_share_connections_hold_and_the_rate_is_trimmed() -> None:
    state = AimdState(connections=10, rate=50.0, scale=100.0)
    # 3 % throttled inside transactions: not enough to cut, too much to raise; the rate
    # limit loses that share (50 x 2940/3031), not a `decrease` share of it.
    j = verdict(state, window(2940, 91, 91, 91, in_use=10), Ceiling(20, None))
    assert j.verdict is Verdict.DECREASE
    assert (j.state.connections, j.state.rate) == (10, pytest.approx(50 * 2940 / 3031))
    assert j.state.scale == j.state.rate
    assert j.state.reason.startswith("rate trimmed to what the receiver takes")


def test_a_limit_that_did_not_bind_is_not_trimmed() -> None:
    # A draining queue: 20/s sent under a 50/s limit, 4 % of it refused.  No trim (the
    # limit said nothing about the receiver), no raise either.
    state = AimdState(connections=10, rate=50.0, scale=100.0)
    j = verdict(state, window(1152, 48, 48, 48, in_use=10), Ceiling(20, None))
    assert (j.verdict, j.state) == (Verdict.HOLD, state)


def test_connection_refusals_do_not_hold_the_rate_back() -> None:
    # 91 refused at connect of 2 091 connections tried (4.4 %): connections hold (no
    # refusal may raise them), the rate (clean in transactions) climbs.
    state = AimdState(connections=10, rate=50.0, scale=100.0)
    j = verdict(state, window(2940, 91, 91, 0, in_use=10, opened=2000), Ceiling(20, None))
    assert j.verdict is Verdict.INCREASE
    assert (j.state.connections, j.state.rate) == (10, pytest.approx(60.0))


def test_refusals_judged_against_connections_cut_connections_only() -> None:
    # 20 refusals against 5 connections let in: 2 % of the 1 020 samples, 80 % of the
    # connections tried.  One connection goes (a cap says exactly "no more"), the rate
    # stays.
    state = AimdState(connections=5, rate=50.0, scale=100.0)
    j = verdict(state, window(1000, 20, 20, 0, in_use=5, opened=5), Ceiling(20, None))
    assert j.verdict is Verdict.DECREASE
    assert (j.state.connections, j.state.rate) == (4, 50.0)
    # One refusal is not enough (a receiver restarting), whatever its share.
    j = verdict(state, window(1000, 1, 1, 0, in_use=5, opened=0), Ceiling(20, None))
    assert j.state.connections == 5


def test_connections_a_site_refused_at_are_not_tried_again_for_a_while() -> None:
    # Limited to 5 with 6 still open from before a cut: refused at 6, not 5.  Down to 4,
    # back to 5, and not to 6 until REFUSAL_MEMORY windows after the refusals.
    j = verdict(AimdState(connections=5), window(1000, 20, 20, 0, in_use=6, opened=5), C20)
    state = j.state
    assert (state.connections, state.refused_at, state.refused_when) == (4, 6, END)
    got = []
    for i in range(1, REFUSAL_MEMORY + 1):
        now = END + i * S.window
        state = verdict(state, window(3000, in_use=state.connections), C20, now=now).state
        got.append(state.connections)
    assert got == [5] * (REFUSAL_MEMORY - 1) + [6]


def test_the_window_after_a_cut_is_judged_early_only_if_the_cut_is_not_working() -> None:
    # The cut window had 50 % throttling.  The next one waits twice a fifth (24 s, not
    # 12 s), then cuts early only while at least half of that (25 %) is still throttled:
    # a receiver's memory of the rate before the cut fades, it does not need a new cut.
    def after(throttled: int) -> Window:
        w = Window(start=T0, after_cut=0.5)
        w.add(100 - throttled, throttled, throttled, throttled, None)
        return w

    assert not after(40).alarming(T0 + 12, S)
    assert after(40).alarming(T0 + 24, S)
    assert not after(10).alarming(T0 + 24, S)  # 10 % >= 5 %, but the cut is working
    fresh = window(90, 10, 10, 10)  # no cut before it: 10 % after 12 s is alarming
    assert fresh.alarming(T0 + 12, S)
    # Judged early for its refusals, such a window cuts connections, not the rate.
    w = Window(start=T0, after_cut=0.5)
    w.add(100, 10, 10, 5, None, opened=3)  # 5 refused at connect, 5 % of 105 at RCPT
    assert w.alarming(T0 + 24, S)
    j = judge(AimdState(connections=6, rate=100.0), w, C20, S, T0 + 24)
    assert (j.verdict, j.state.connections, j.state.rate) == (Verdict.DECREASE, 5, 100.0)


def test_one_verdict_takes_at_most_decrease_off_a_rate_in_force() -> None:
    # A window judged right after a cut: 40/s accepted while limited to 100/s.  Not
    # 0.9 x 40 = 36/s: 0.5 x 100 = 50/s (decrease 0.5).
    j = verdict(AimdState(rate=100.0), window(2400, 2400, 2400, 2400), Ceiling(20, None))
    assert j.state.rate == pytest.approx(50.0)


def test_a_cut_judged_early_right_after_another_keeps_a_margin_under_the_limit_taken() -> None:
    # 100/s in force, a quarter refused at RCPT: the receiver takes 75/s.  Judged at the
    # window's end: 75.  Judged early in the window after a cut (24 s, twice the fifth),
    # where the receiver still counts what came before: RATE_KEEP x 75.
    state = AimdState(rate=100.0)
    due = window(4500, 1500, 1500, 1500)
    assert verdict(state, due, C20).state.rate == pytest.approx(75.0)
    early = Window(start=T0, after_cut=0.5)
    early.add(1800, 600, 600, 600, None)
    j = judge(state, early, C20, S, T0 + 24)
    assert (j.verdict, j.state.rate) == (Verdict.DECREASE, pytest.approx(75.0 * 0.9))


def test_a_cut_held_to_the_one_step_bound_is_no_measure_and_climbs_back_at_full_steps() -> None:
    # 30/s accepted of 80/s sent under 100/s right after a cut (it takes 37.5): held at
    # 50/s, and 50 is not taken as what the receiver takes, so a clean window adds a
    # full step, not a probe's quarter.
    j = verdict(AimdState(rate=100.0, scale=120.0), window(1800, 3000, 3000, 3000), C20)
    assert (j.state.rate, j.state.scale) == (pytest.approx(50.0), None)
    k = verdict(j.state, window(2970), C20)  # 49.5/s of 50: in use, clean
    assert k.state.rate == pytest.approx(55.0)


def test_below_what_the_receiver_took_the_rate_returns_at_full_steps_but_no_further() -> None:
    # Cut to 90/s from the 100/s accepted: one clean window goes back to 100, not 100.
    state = AimdState(rate=80.0, scale=100.0, probe=3)
    j = verdict(state, window(4740), Ceiling(20, None))  # 79/s of 80: in use
    assert (j.verdict, j.state.rate, j.state.probe) == (Verdict.INCREASE, 90.0, 0)
    j = verdict(AimdState(rate=95.0, scale=100.0), window(5640), Ceiling(20, None))
    assert j.state.rate == pytest.approx(100.0)  # + 10 would pass it


def test_at_what_the_receiver_took_probes_start_small_and_double() -> None:
    rates, state = [], AimdState(rate=100.0, scale=100.0)
    for _ in range(4):
        j = verdict(state, window(int(state.rate * 60 * 0.99)), Ceiling(20, None), now=END)
        state = j.state
        assert state.rate is not None
        rates.append(round(state.rate, 1))
    assert rates == [102.5, 107.5, 117.5, 127.5]  # 2.5, 5, 10, then the full step
    assert state.probe == 4


def test_an_overshooting_probe_goes_back_to_the_limit_taken_not_below() -> None:
    # Probing at 107.5/s, 8 % refused at RCPT, 100/s still accepted: back to the limit it
    # takes (107.5 x 6000/6520, ~99/s), with the connections it had; a receiver that
    # takes less than before is cut as usual (the rate only: it bound).
    state = AimdState(connections=6, rate=107.5, scale=100.0, probe=2)
    j = verdict(state, window(6000, 520, 520, 520, in_use=6), Ceiling(20, None))
    assert j.verdict is Verdict.DECREASE
    takes = 107.5 * 6000 / 6520
    assert (j.state.connections, j.state.rate, j.state.probe) == (6, pytest.approx(takes), 0)
    j = verdict(state, window(4800, 1700, 1700, 1700, in_use=6), Ceiling(20, None))
    assert (j.state.connections, j.state.rate) == (6, pytest.approx(107.5 * 4800 / 6500))


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
