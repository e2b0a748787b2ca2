"""engine.shaping.egress: the warm-up schedule, a destination's pool, and the weighted
choice of sources on a fake clock (with the supervisor's quota table behind it)."""

from __future__ import annotations

import datetime
import itertools
import random
from collections import Counter

import pytest

from engine.config import load_settings
from engine.config.egress import EgressPool, Warmup
from engine.config.policy import DomainPolicy
from engine.shaping.egress import (
    DAY,
    QuotaRow,
    SourceChooser,
    daily_limit,
    next_midnight,
    pool_for,
    quota_rows,
    utc_day,
)
from engine.shaping.providers import Provider
from engine.shaping.quota import QuotaTable
from tests.support.fake_clock import FakeClock

START = datetime.date(2026, 12, 1)
DAY0 = (START - datetime.date(1970, 1, 1)).days
WARMUP = Warmup(START, 30, 200, 100000)


def test_utc_days_and_midnights() -> None:
    noon = DAY0 * DAY + 12 * 3600.0
    assert utc_day(noon) == DAY0
    assert next_midnight(noon) == (DAY0 + 1) * DAY
    assert utc_day(next_midnight(noon)) == DAY0 + 1
    assert utc_day(next_midnight(noon) - 0.001) == DAY0


def test_the_schedule_grows_geometrically_from_first_to_last() -> None:
    assert daily_limit(None, DAY0) is None  # no warm-up: no limit
    assert daily_limit(WARMUP, DAY0 - 1) == 0  # not in service before its start
    assert daily_limit(WARMUP, DAY0) == 200
    # Half way: the geometric mean, 200 * 500 ** 0.5.
    assert daily_limit(WARMUP, DAY0 + 15) == 4472
    assert daily_limit(WARMUP, DAY0 + 30) == 100000
    assert daily_limit(WARMUP, DAY0 + 31) is None  # warmed up
    limits = [daily_limit(WARMUP, DAY0 + d) or 0 for d in range(31)]
    ratios = [b / a for a, b in itertools.pairwise(limits)]
    assert all(ratio == pytest.approx(500 ** (1 / 30), rel=0.01) for ratio in ratios)


def test_a_flat_schedule_is_flat() -> None:
    flat = Warmup(START, 3, 7, 7)
    assert [daily_limit(flat, DAY0 + d) for d in range(5)] == [7, 7, 7, 7, None]


def test_the_pool_of_a_destination_domain_then_provider_then_default() -> None:
    s = load_settings(
        None,
        {
            "egress": {
                "sources": {"a": {"address": "192.0.2.1"}},
                "pools": {n: {"sources": {"a": 1}} for n in ("default", "gmail", "own")},
            }
        },
    )
    google = Provider("google", (".google.com",), egress_pool="gmail")
    other = Provider("other", (".other.test",))
    mine = DomainPolicy(egress_pool="own")
    assert pool_for(s.egress, mine, google) is s.egress.pools["own"]
    assert pool_for(s.egress, DomainPolicy(), google) is s.egress.pools["gmail"]
    assert pool_for(s.egress, DomainPolicy(), other) is s.egress.pools["default"]
    assert pool_for(s.egress, DomainPolicy(), None) is s.egress.pools["default"]
    without_default = {
        "egress": {
            "sources": {"a": {"address": "192.0.2.1"}},
            "pools": {"gmail": {"sources": {"a": 1}}},
        }
    }
    e = load_settings(None, without_default).egress
    assert pool_for(e, DomainPolicy(), None) is None  # smtp.source_address, as before
    assert pool_for(e, DomainPolicy(), google) is e.pools["gmail"]


def test_picks_follow_the_weights_and_skip_sources_out_of_quota() -> None:
    pool = EgressPool("p", (("a", 3), ("b", 1), ("c", 1)))
    chooser = SourceChooser(random.Random(7))
    picks = Counter(chooser.pick(pool, 0.0) for _ in range(10_000))
    assert picks["a"] / 10_000 == pytest.approx(0.6, abs=0.02)
    assert picks["b"] / 10_000 == pytest.approx(0.2, abs=0.02)
    chooser.out_of_quota("a", 100.0)
    assert {chooser.pick(pool, 50.0) for _ in range(100)} == {"b", "c"}
    assert {chooser.pick(pool, 50.0, exclude={"b"}) for _ in range(20)} == {"c"}
    chooser.out_of_quota("c", 60.0)
    assert chooser.pick(pool, 50.0, exclude={"b"}) is None
    assert chooser.back_at(pool, 50.0) == 60.0  # the first to come back
    assert chooser.pick(pool, 100.0) in {"a", "b", "c"}  # a's time is over
    chooser.reset()
    assert chooser.back_at(pool, 50.0) == 50.0


def test_a_warming_source_drops_out_when_its_day_is_used_and_comes_back_the_next() -> None:
    """A worker's choice with the supervisor's table behind it, on a fake clock: the
    weights hold while both sources have quota, the warm one leaves after exactly its
    day's limit, and it is back the next UTC day with the next day's limit."""
    warmup = Warmup(START, 30, 50, 100000)
    pool = EgressPool("p", (("warm", 1), ("cold", 1)))
    clock = FakeClock(DAY0 * DAY + 3600.0)
    table = QuotaTable()
    chooser = SourceChooser(random.Random(1))
    sent: Counter[str] = Counter()
    sequence: list[str] = []

    def one_message() -> None:
        now = clock.wall()
        name = chooser.pick(pool, now)
        assert name is not None
        if name == "warm":
            limit = daily_limit(warmup, utc_day(now))
            assert limit is not None
            if not table.grant("warm", utc_day(now), limit, 1, holder=0).granted:
                chooser.out_of_quota("warm", next_midnight(now))
                name = chooser.pick(pool, now)
                assert name == "cold"
        sent[name] += 1
        sequence.append(name)
        clock.advance(1.0)

    for _ in range(200):
        one_message()
    assert sent["warm"] == 50 and sent["cold"] == 150
    last_warm = max(i for i, name in enumerate(sequence) if name == "warm")
    # While both had quota, about half went each way.
    assert 0.35 <= sequence[: last_warm + 1].count("warm") / (last_warm + 1) <= 0.65
    assert set(sequence[last_warm + 1 :]) == {"cold"}
    clock.now = (DAY0 + 1) * DAY  # the next UTC day: 50 * 2000 ** (1/30) = 64
    sent.clear()
    for _ in range(400):
        one_message()
    assert sent["warm"] == daily_limit(warmup, DAY0 + 1) == 64


def test_quota_rows_cover_sources_in_warm_up_today() -> None:
    s = load_settings(
        None,
        {
            "egress": {
                "sources": {
                    "warm": {
                        "address": "192.0.2.1",
                        "warmup": {"start": START.isoformat(), "days": 2, "first": 10, "last": 40},
                    },
                    "cold": {"address": "192.0.2.2"},
                }
            }
        },
    )
    table = QuotaTable({("warm", DAY0): 4})
    assert quota_rows(s.egress, table.used, DAY0 * DAY) == [QuotaRow("warm", 4, 6)]
    assert quota_rows(s.egress, table.used, (DAY0 + 1) * DAY) == [QuotaRow("warm", 0, 20)]
    assert quota_rows(s.egress, table.used, (DAY0 + 3) * DAY) == []  # warmed up
