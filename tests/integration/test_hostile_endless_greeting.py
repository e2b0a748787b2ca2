"""Issue #11: a receiver whose greeting is an endless multi-line reply, sent as fast as TCP
allows, once took a worker to 4.3 GB of RSS in 30 s.  Now the reply is refused at its
line limit (MAX_REPLY_LINES), the connection closed, the mail deferred, and the good
destination's mail goes on meanwhile."""

from __future__ import annotations

from tests.support.hostile import PHASE, RSS_BOUND_MB, endless_greeting, run_hostile


def test_endless_greeting_is_cut_off_at_the_reply_limit(net, volley) -> None:
    run = run_hostile(net, volley, endless_greeting)
    print(f"peak worker RSS {run.peak_rss_mb} MB, first deferral {run.first_deferral_after:.2f}s")
    assert max(run.peak_rss_mb.values()) < RSS_BOUND_MB
    assert all("longer than 200 lines" in e["text"] for e in run.deferrals), run.deferrals[:3]
    assert run.first_deferral_after < PHASE  # refused at once, not at the greeting timeout
