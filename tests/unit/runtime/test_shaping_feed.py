"""engine.runtime.shaping_feed: per-site reports, throttling counts, the table in force."""

from __future__ import annotations

from typing import Any

from engine.config.policy import DomainPolicy
from engine.model import ConnectFailure, Disposition, Origin, RecipientOutcome, Reply
from engine.runtime.shaping_feed import MAX_SAMPLES, ShapingFeed
from engine.shaping.gcra import parse_rate
from engine.shaping.limits import site_limits
from engine.shaping.sites import Site
from engine.telemetry.metrics import CheckedTally

SITE = Site("(mx1|mx2).p.test", "p")
CEILING = site_limits(DomainPolicy(max_connections=7, max_message_rate=parse_rate("10/s")), None)


def _feed() -> tuple[ShapingFeed, list[tuple[Any, ...]], CheckedTally]:
    sent: list[tuple[Any, ...]] = []
    tally = CheckedTally()
    return ShapingFeed(lambda *m: sent.append(m), tally), sent, tally


def test_one_report_per_site_with_deliveries_and_bare_reply_samples() -> None:
    feed, sent, tally = _feed()
    feed.flush(5.0)  # nothing to report yet: nothing sent
    outcomes = [
        RecipientOutcome("a@x", Disposition.DELIVERED, 250, "2.0.0", "2.0.0 ok"),
        RecipientOutcome("b@x", Disposition.DEFERRED, 451, "4.7.1", "4.7.1 rate limited"),
        RecipientOutcome(
            "c@x", Disposition.DEFERRED, 451, "4.4.2", "timeout", Origin.CONNECTION, "timeout"
        ),
    ]
    feed.outcomes(SITE, CEILING, outcomes)
    refused = ConnectFailure("mx1.p.test", "127.0.0.9", Reply(421, ("4.7.0 too many",)))
    feed.refused(SITE, CEILING, refused)
    feed.opened(SITE, CEILING)
    feed.opened(SITE, CEILING)
    feed.flush(5.25)
    assert sent == [
        (
            "shaping",
            SITE.name,
            "p",
            7,
            10.0,
            1,
            [[451, "4.7.1", "rate limited", "transaction"], [421, "4.7.0", "too many", "connect"]],
            2,  # connections let in
            0.25,  # seconds the report covers
        )
    ]
    counts, _, _ = tally.drain()
    assert ["volley_throttling_replies", ["connect"], 1] in counts
    assert ["volley_throttling_replies", ["transaction"], 1] in counts
    feed.flush(5.5)
    assert len(sent) == 1  # nothing new: no report


def test_samples_are_capped_per_report() -> None:
    feed, sent, _ = _feed()
    many = [
        RecipientOutcome(f"{i}@x", Disposition.DEFERRED, 450, "4.2.0", "4.2.0 busy")
        for i in range(MAX_SAMPLES + 50)
    ]
    feed.outcomes(SITE, CEILING, many)
    feed.flush(1.0)
    assert len(sent[0][6]) == MAX_SAMPLES


def test_the_table_applies_to_a_site_and_through_its_provider() -> None:
    feed, _, _ = _feed()
    feed.apply({SITE.name: [2, 5.0, None, None], "provider:p": [None, None, 1e12, None]})
    got = feed.in_force(SITE)
    assert [(f.connections, f.rate, f.suspended_until) for f in got] == [
        (2, 5.0, None),
        (None, None, 1e12),
    ]
    assert feed.in_force(Site("other.test", None)) == []
