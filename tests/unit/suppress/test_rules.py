"""engine.suppress.rules: hard-bounce categories and the soft-bounce rule, with a fake clock."""

from __future__ import annotations

from types import SimpleNamespace

from engine.config import SoftBounce, SuppressionSettings
from engine.suppress.model import GLOBAL, Source
from engine.suppress.rules import History, category_of, decide, fallback_category
from tests.support.fake_clock import FakeClock

DAY = 86400.0
S = SuppressionSettings()


def step(clock: FakeClock, category: str | None, history: History, msg: str, **kw: object):
    return decide(
        category,
        "bob@x.test",
        "news.test",
        permanent=bool(kw.get("permanent", False)),
        message=msg,
        text="452 4.2.2 mailbox full",
        history=history,
        now=clock.wall(),
        settings=kw.get("settings", S),  # type: ignore[arg-type]
    )


def test_fallback_categories() -> None:
    assert fallback_category("5.1.1") == "InvalidRecipient"
    assert fallback_category("5.1.10") == "BadDomain"
    assert fallback_category("5.2.1") == "InactiveMailbox"
    assert fallback_category("4.2.2") == "QuotaIssues"
    assert fallback_category("5.7.1") is None and fallback_category("") is None
    assert fallback_category("2.1.5") is None
    assert category_of(SimpleNamespace(enhanced="5.1.1")) == "InvalidRecipient"
    classified = SimpleNamespace(
        enhanced="5.1.1", classification=SimpleNamespace(category=SimpleNamespace(value="X"))
    )
    assert category_of(classified) == "X"  # the classifier's category wins when present


def test_hard_bounce_categories_suppress_globally_without_expiry() -> None:
    clock = FakeClock(1_800_000_000.0)
    d = step(clock, "InvalidRecipient", ((1.0, "m0"),), "m1", permanent=True)
    assert d.entry is not None and d.entry.scope == GLOBAL and d.entry.expires is None
    assert d.entry.source is Source.BOUNCE and d.entry.reason.startswith("InvalidRecipient:")
    assert d.history == ()
    # A temporary failure of the category, or a category not listed, adds nothing.
    assert step(clock, "InvalidRecipient", (), "m1").entry is None
    assert step(clock, "SpamBlock", (), "m1", permanent=True) == step(clock, None, (), "m1")
    off = SuppressionSettings(categories=())
    assert step(clock, "InvalidRecipient", (), "m1", permanent=True, settings=off).entry is None


def test_soft_bounces_count_messages_in_the_window_and_reset_on_delivery() -> None:
    clock = FakeClock(1_800_000_000.0)
    h: History = ()
    d = step(clock, "QuotaIssues", h, "m1")
    assert d.entry is None and d.history is not None and len(d.history) == 1
    h = d.history
    # The same message retried is one event, not another.
    clock.advance(600)
    d = step(clock, "QuotaIssues", h, "m1")
    assert d.entry is None and d.history is None
    clock.advance(DAY)
    h = step(clock, "QuotaIssues", h, "m2").history or h
    assert len(h) == 2
    # A delivery clears the history: the next failure starts again at one.
    cleared = step(clock, None, h, "m3")
    assert cleared.entry is None and cleared.history == ()
    d = step(clock, "QuotaIssues", h, "m3", permanent=True)
    assert d.entry is not None and d.history == ()
    assert d.entry.expires == clock.wall() + 30 * DAY  # suppressed for expire_after
    assert d.entry.scope == GLOBAL and "3 messages in 7 days" in d.entry.reason


def test_old_events_leave_the_window() -> None:
    clock = FakeClock(1_800_000_000.0)
    h: History = ((clock.wall(), "m1"), (clock.wall() + 2 * DAY, "m2"))
    clock.advance(8 * DAY)  # m1 is older than 7 days now
    d = step(clock, "QuotaIssues", h, "m3")
    assert d.entry is None and d.history is not None
    assert [m for _, m in d.history] == ["m2", "m3"]
    off = SuppressionSettings(soft_bounce=SoftBounce(count=0))
    assert step(clock, "QuotaIssues", h, "m3", settings=off) == step(clock, "Nope", h, "m3")
