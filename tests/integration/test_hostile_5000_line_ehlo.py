"""Issue #11: a 5 000-line EHLO reply (sent at once) is refused at the reply's line limit
(200) rather than kept as 5 000 extensions for the session's life."""

from __future__ import annotations

from tests.support.hostile import PHASE, RSS_BOUND_MB, ehlo_5000_lines, run_hostile


def test_a_5000_line_ehlo_is_refused(net, volley) -> None:
    run = run_hostile(net, volley, ehlo_5000_lines)
    print(f"peak worker RSS {run.peak_rss_mb} MB, first deferral {run.first_deferral_after:.2f}s")
    assert max(run.peak_rss_mb.values()) < RSS_BOUND_MB
    assert all("longer than 200 lines" in e["text"] for e in run.deferrals), run.deferrals[:3]
    assert run.first_deferral_after < PHASE
