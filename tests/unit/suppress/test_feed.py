"""engine.suppress.feed: which outcomes reach the rules, and deliveries that reset."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from engine.config import Settings, SoftBounce, SuppressionSettings
from engine.model import Disposition, RecipientOutcome
from engine.suppress.client import SuppressClient
from engine.suppress.feed import SOFT_REFRESH, BounceFeed
from engine.suppress.model import Entry


class Reader:
    def __init__(self, soft: list[str]) -> None:
        self.soft = soft
        self.reads = 0

    def lookup(self, keys: Sequence[str]) -> list[Entry]:
        return []

    def soft_addresses(self) -> list[str]:
        self.reads += 1
        return list(self.soft)

    def close(self) -> None:
        pass


def outcome(
    rcpt: str, d: Disposition, code: int = 250, enhanced: str = "2.0.0"
) -> RecipientOutcome:
    return RecipientOutcome(rcpt, d, code, enhanced, "text")


def setup(
    soft: list[str], settings: Settings | None = None
) -> tuple[BounceFeed, list[Any], Reader]:
    sent: list[Any] = []
    client = SuppressClient(lambda *m: sent.append(m))
    reader = Reader(soft)
    feed = BounceFeed(settings or Settings(), client, reader)
    return feed, sent, reader


def events(feed: BounceFeed, sent: list[Any]) -> list[list[Any]]:
    feed._client.flush()
    return [e for m in sent for e in m[1]]


META = {"msg": "m1", "sender": "news@Sender.test"}


def test_only_what_the_rules_use_is_sent() -> None:
    feed, sent, _ = setup(["back@x.test"])
    feed.observe(
        META,
        [
            outcome("ok@x.test", Disposition.DELIVERED),
            outcome("Gone@X.test", Disposition.BOUNCED, 550, "5.1.1"),
            outcome("full@x.test", Disposition.DEFERRED, 452, "4.2.2"),
            outcome("busy@x.test", Disposition.DEFERRED, 450, "4.2.0"),
            outcome("spam@x.test", Disposition.BOUNCED, 550, "5.7.1"),
            outcome("maybe@x.test", Disposition.DEFERRED, 450, "4.1.1"),
            outcome("back@x.test", Disposition.DELIVERED),
        ],
        1000.0,
    )
    got = events(feed, sent)
    assert [(e[0], e[1], e[2], e[3]) for e in got] == [
        ("InvalidRecipient", "gone@x.test", "sender.test", True),
        ("QuotaIssues", "full@x.test", "sender.test", False),
        (None, "back@x.test", None, False),  # a delivery clears its soft-bounce history
    ]
    assert got[0][4] == "m1" and got[0][5] == "550 5.1.1 text"


def test_soft_addresses_are_reread_every_refresh_and_learnt_meanwhile() -> None:
    feed, sent, reader = setup([])
    feed.observe(META, [outcome("full@x.test", Disposition.DEFERRED, 452, "4.2.2")], 1000.0)
    feed.observe(META, [outcome("full@x.test", Disposition.DELIVERED)], 1001.0)
    assert [e[0] for e in events(feed, sent)] == ["QuotaIssues", None]
    assert reader.reads == 1
    feed.observe(META, [], 1000.0 + SOFT_REFRESH)
    assert reader.reads == 2


def test_nothing_when_the_rules_are_off_and_async_bounces() -> None:
    off = Settings(suppression=SuppressionSettings(categories=(), soft_bounce=SoftBounce(count=0)))
    feed, sent, reader = setup(["a@x.test"], off)
    feed.observe(META, [outcome("a@x.test", Disposition.BOUNCED, 550, "5.1.1")], 1.0)
    assert events(feed, sent) == [] and reader.reads == 0
    feed, sent, _ = setup([])
    feed.observe_report(
        [("a@x.test", "5.1.1", "user unknown"), ("b@x.test", "5.7.1", "")], "<m>", 2.0
    )
    assert [(e[0], e[1], e[3], e[4]) for e in events(feed, sent)] == [
        ("InvalidRecipient", "a@x.test", True, "<m>")
    ]
