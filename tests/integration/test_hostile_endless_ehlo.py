"""Issue #11: an EHLO reply that never ends, sent as fast as TCP allows, is refused at the
reply's line limit; the mail is deferred, memory stays bounded, good mail goes on."""

from __future__ import annotations

from tests.support.hostile import PHASE, RSS_BOUND_MB, endless_ehlo, run_hostile


def test_endless_ehlo_is_cut_off_at_the_reply_limit(net, volley) -> None:
    run = run_hostile(net, volley, endless_ehlo)
    print(f"peak worker RSS {run.peak_rss_mb} MB, first deferral {run.first_deferral_after:.2f}s")
    assert max(run.peak_rss_mb.values()) < RSS_BOUND_MB
    assert all("longer than 200 lines" in e["text"] for e in run.deferrals), run.deferrals[:3]
    assert run.first_deferral_after < PHASE
