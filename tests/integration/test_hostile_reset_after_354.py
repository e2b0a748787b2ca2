"""Issue #11: a receiver that resets the connection once the content starts (after its
354) gets the message deferred, never bounced or counted as delivered."""

from __future__ import annotations

from tests.support.hostile import PHASE, RSS_BOUND_MB, reset_after_354, run_hostile


def test_reset_after_354_defers(net, volley) -> None:
    run = run_hostile(net, volley, reset_after_354)
    print(f"peak worker RSS {run.peak_rss_mb} MB, first deferral {run.first_deferral_after:.2f}s")
    assert max(run.peak_rss_mb.values()) < RSS_BOUND_MB
    assert all(e["code"] // 100 == 4 for e in run.deferrals), run.deferrals[:3]
    assert any("connection" in e["text"] for e in run.deferrals), run.deferrals[:3]
    assert run.first_deferral_after < PHASE
