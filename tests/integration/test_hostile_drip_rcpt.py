"""Issue #11: a receiver answering each of a message's 5 RCPTs just in time (0.84 s each,
one byte every 60 ms) stretched a per-reply timeout without end; the RCPT phase's
deadline (2 s here) now bounds all of them together, so the message is deferred."""

from __future__ import annotations

from tests.support.hostile import PHASE, RSS_BOUND_MB, drip_rcpt_replies, run_hostile


def test_rcpt_replies_in_time_each_but_not_together_are_cut_off(net, volley) -> None:
    run = run_hostile(net, volley, drip_rcpt_replies, hostile_messages=4, hostile_recipients=5)
    print(f"peak worker RSS {run.peak_rss_mb} MB, first deferral {run.first_deferral_after:.2f}s")
    assert max(run.peak_rss_mb.values()) < RSS_BOUND_MB
    assert all("RCPT within 2s" in e["text"] for e in run.deferrals), run.deferrals[:3]
    assert PHASE <= run.first_deferral_after < 2 * PHASE + 2
