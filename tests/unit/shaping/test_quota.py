"""engine.shaping.quota: a source's day is granted up to its limit, unused parts come
back, a dead worker's grants stay used, and past days are forgotten."""

from __future__ import annotations

from engine.shaping.quota import QuotaGrant, QuotaTable


def test_grants_stop_at_the_limit_and_unused_messages_come_back() -> None:
    t = QuotaTable()
    assert t.grant("ip1", 100, 10, 4, holder=0) == QuotaGrant(4, 4)
    assert t.grant("ip1", 100, 10, 4, holder=1) == QuotaGrant(4, 8)
    assert t.grant("ip1", 100, 10, 4, holder=1) == QuotaGrant(2, 10)  # what is left
    assert t.grant("ip1", 100, 10, 4, holder=0) == QuotaGrant(0, 10)  # pending: may come back
    assert t.used("ip1", 100) == 10
    t.give_back("ip1", 100, 4, 3, holder=0)  # sent 1 of 4
    assert t.used("ip1", 100) == 7 and t.pending("ip1", 100) == 6
    assert t.grant("ip1", 100, 10, 4, holder=0) == QuotaGrant(3, 9)
    t.give_back("ip1", 100, 4, 0, holder=1)
    t.give_back("ip1", 100, 2, 0, holder=1)
    t.give_back("ip1", 100, 3, 0, holder=0)
    assert t.used("ip1", 100) == 10 and t.pending("ip1", 100) == 0
    assert t.grant("ip1", 100, 10, 4, holder=0) == QuotaGrant(0, 0)  # the day is used
    # Other sources and days are counted apart; a raised limit (a reload) has room.
    assert t.grant("ip2", 100, 10, 4, holder=0).granted == 4
    assert t.grant("ip1", 101, 10, 4, holder=0).granted == 4
    assert t.grant("ip1", 100, 12, 4, holder=0).granted == 2


def test_a_give_back_cannot_return_more_than_was_granted() -> None:
    t = QuotaTable()
    t.grant("ip1", 1, 10, 3, holder=0)
    t.give_back("ip1", 1, 5, 9, holder=0)  # says more than it had
    assert t.used("ip1", 1) == 0 and t.pending("ip1", 1) == 0
    t.give_back("ip1", 1, 3, 3, holder=0)  # nothing pending: ignored
    t.give_back("ip1", 1, 3, 3, holder=7)  # never granted anything
    assert t.used("ip1", 1) == 0


def test_a_dead_workers_grants_stay_used() -> None:
    t = QuotaTable()
    t.grant("ip1", 1, 10, 6, holder=0)
    t.grant("ip1", 1, 10, 2, holder=1)
    t.drop_holder(0)
    assert t.used("ip1", 1) == 8 and t.pending("ip1", 1) == 2
    t.give_back("ip1", 1, 6, 6, holder=0)  # its connection's message, late: ignored
    assert t.used("ip1", 1) == 8


def test_counts_from_before_and_forgetting_past_days() -> None:
    t = QuotaTable({("ip1", 1): 9, ("ip1", 2): 3})
    assert t.grant("ip1", 1, 10, 4, holder=0).granted == 1
    assert t.forget_before(2) == [("ip1", 1)]
    assert t.used("ip1", 1) == 0 and t.pending("ip1", 1) == 0
    assert list(t.items()) == [(("ip1", 2), 3)]
