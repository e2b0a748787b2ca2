"""Issue #11: a greeting dripped one byte every 100 ms never completes a reply; the
greeting's deadline bounds the whole phase (before, a per-read timeout could be stretched
forever), so the mail is deferred when it expires, and good mail goes on meanwhile."""

from __future__ import annotations

from tests.support.hostile import PHASE, RSS_BOUND_MB, drip, run_hostile


def test_a_dripping_greeting_is_cut_off_when_its_phase_ends(net, volley) -> None:
    run = run_hostile(net, volley, drip)
    print(f"peak worker RSS {run.peak_rss_mb} MB, first deferral {run.first_deferral_after:.2f}s")
    assert max(run.peak_rss_mb.values()) < RSS_BOUND_MB
    assert all("greeting" in e["text"] and "2s" in e["text"] for e in run.deferrals), run.deferrals[
        :3
    ]
    # Not before the deadline, and not much after it (connect + 2 s + log flush).
    assert PHASE <= run.first_deferral_after < 2 * PHASE + 2
    # The good destination did not wait for the hostile one's deadline.
    assert run.good_delivered_after < PHASE + 10
