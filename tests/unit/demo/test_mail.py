"""demo.mail: a deterministic, personalised recipient list and its messages."""

from __future__ import annotations

from collections import Counter
from email import message_from_bytes

from demo.mail import compose, recipients
from demo.world import Kind, plan
from tests.support.receiver import Behaviour, scenario_for


def test_recipients_are_distinct_deterministic_and_follow_the_plan() -> None:
    dests = plan(10)
    rs = recipients(dests, 2000, seed=7)
    assert rs == recipients(dests, 2000, seed=7)
    assert len({r.address for r in rs}) == 2000
    by_kind = Counter(r.kind for r in rs)
    assert set(by_kind) == set(Kind)
    assert by_kind[Kind.BIG] > by_kind[Kind.TYPO]
    for r in rs:
        behaviour = scenario_for(r.address).behaviour
        if r.kind is Kind.GREYLIST:
            assert behaviour in (Behaviour.FLAKY, Behaviour.PERMFAIL), r
        elif r.kind is Kind.TYPO:
            assert behaviour is Behaviour.ACCEPT, r  # bounced by DNS, not by a receiver
        else:
            assert behaviour in (Behaviour.ACCEPT, Behaviour.PERMFAIL), r
    strict = [r for r in rs if r.kind is Kind.STRICT]
    unknown = sum(1 for r in strict if scenario_for(r.address).behaviour is Behaviour.PERMFAIL)
    assert 0.15 < unknown / len(strict) < 0.5


def test_messages_are_personalised() -> None:
    rs = recipients(plan(5), 50, seed=1)
    msgs = [message_from_bytes(compose(r)) for r in rs]
    assert len({m["Subject"] for m in msgs}) == 50
    assert len({m["Message-ID"] for m in msgs}) == 50
    for r, m in zip(rs, msgs, strict=True):
        assert m["To"] == r.address and m["From"] == "Shop <news@shop.test>"
        assert r.first in m["Subject"] or r.first in m.get_payload()
        assert f"Hello {r.first}," in m.get_payload()
