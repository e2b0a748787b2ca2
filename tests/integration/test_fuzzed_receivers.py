"""Issue #14: against MX hosts that answer every command at random, every recipient gets
an outcome and the connections stay bounded (the 10 000-connection run is
bench/fuzz_replies.py; this is its small cousin, run on every CI)."""

from __future__ import annotations

from tests.support.fuzz_campaign import fuzz_campaign


def test_random_replies_end_in_decisions_with_bounded_connections(tmp_path) -> None:
    r = fuzz_campaign(tmp_path / "fuzz", target_connections=300, domains=4, max_age=4.0)
    summary = r.as_dict()
    assert r.unfinished == [] and r.left_queued == [], summary
    assert r.finals == r.recipients and r.duplicates_final == 0, summary
    assert r.internal_errors == 0 and r.quarantined == 0, summary
    assert r.with_mail <= r.entry_attempts, summary
    assert r.without_mail <= r.without_mail_bound, summary
    assert r.outcomes["delivered"] > 0 and r.outcomes["deferred"] > 0, summary
