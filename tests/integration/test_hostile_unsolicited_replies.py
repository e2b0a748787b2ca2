"""Issue #11: a receiver that floods replies to commands never sent (right after its
EHLO reply) is a protocol error: the connection is closed, the mail deferred, and no
reply is taken as the answer to a command sent later."""

from __future__ import annotations

from tests.support.hostile import PHASE, RSS_BOUND_MB, run_hostile, unsolicited


def test_unsolicited_replies_end_the_connection(net, volley) -> None:
    run = run_hostile(net, volley, unsolicited)
    print(f"peak worker RSS {run.peak_rss_mb} MB, first deferral {run.first_deferral_after:.2f}s")
    assert max(run.peak_rss_mb.values()) < RSS_BOUND_MB
    assert all("protocol error" in e["text"] for e in run.deferrals), run.deferrals[:3]
    assert run.first_deferral_after < PHASE
