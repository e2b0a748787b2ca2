"""Issue #11: a receiver that says 220 to STARTTLS and then never answers the TLS hello.
The handshake is bounded by the starttls timeout; with `tls = "required"` for the
destination the mail is then deferred (opportunistic TLS would go on in plaintext,
RFC 3207 §4.1), and good mail goes on meanwhile."""

from __future__ import annotations

from tests.support.hostile import PHASE, RSS_BOUND_MB, run_hostile, tls_stall


def test_a_stalled_tls_handshake_is_bounded_and_deferred(net, volley) -> None:
    run = run_hostile(net, volley, tls_stall, policy={"tls": "required"})
    print(f"peak worker RSS {run.peak_rss_mb} MB, first deferral {run.first_deferral_after:.2f}s")
    assert max(run.peak_rss_mb.values()) < RSS_BOUND_MB
    assert all("tls" in e["text"].lower() for e in run.deferrals), run.deferrals[:3]
    assert PHASE <= run.first_deferral_after < 2 * PHASE + 2
    assert run.good_delivered_after < PHASE + 10
