"""demo.summary: the closing report, counted from delivery-log records."""

from __future__ import annotations

from typing import Any

from demo.summary import tally

SENDER = "news@shop.test"


def out(event: str, rcpt: str, ts: float, **kw: Any) -> dict[str, Any]:
    return {"event": event, "rcpt": rcpt, "ts": ts, "sender": SENDER, **kw}


def test_counts_outcomes_deferrals_dsns_and_rates() -> None:
    records = [
        out("received", "a@x.test", 100.0),
        out("received", "b@y.test", 100.0),
        out("received", "c@z.test", 100.1),
        out("delivered", "a@x.test", 101.0, code=250),
        out("deferred", "b@y.test", 100.5, code=451),
        out("deferred", "b@y.test", 101.5, code=451),
        out("delivered", "b@y.test", 103.0, code=250),
        out("bounced", "c@z.test", 100.5, code=550, enhanced="5.1.1", text="5.1.1 no user"),
        {"event": "dsn", "rcpt": SENDER, "ts": 100.6},
        {"event": "delivered", "rcpt": SENDER, "sender": "", "ts": 100.8},
    ]
    received = {"x.test": ["a@x.test"], "y.test": ["b@y.test"], "shop.test": [SENDER]}
    s = tally(records, ["a@x.test", "b@y.test", "c@z.test"], 3, received, SENDER)
    assert (s.delivered, s.bounced, s.expired, s.pending) == (2, 1, 0, 0)
    assert (s.deferred_then_delivered, s.deferrals) == (1, 2)
    assert (s.dsn_created, s.dsn_delivered) == (1, 1)
    assert s.bounce_reasons == {"unknown user (550 5.1.1)": 1}
    assert s.received_ok and s.accounted
    # First-attempt outcomes only: a at 101.0 and c at 100.5, from the first intake at 100.0.
    assert s.first_try == 2 and s.rate == 2.0
    text = "\n".join(s.lines(sender=SENDER, drop_rate=1000))
    assert "everything delivered or accounted for" in text
    assert "1 unknown user (550 5.1.1)" in text and "1 of 1 delivered" in text


def test_pending_or_missing_mail_is_not_accounted() -> None:
    records = [out("received", "a@x.test", 1.0), out("deferred", "a@x.test", 2.0)]
    s = tally(records, ["a@x.test"], 1, {"x.test": []}, SENDER)
    assert s.pending == 1 and not s.accounted
    assert "NOT everything is accounted for" in s.lines(sender=SENDER, drop_rate=1)[0]


def test_a_message_received_twice_or_not_logged_is_reported() -> None:
    records = [out("received", "a@x.test", 1.0), out("delivered", "a@x.test", 2.0)]
    twice = tally(records, ["a@x.test"], 1, {"x.test": ["a@x.test", "a@x.test"]}, SENDER)
    assert not twice.accounted and "twice" in twice.received_problem
    unlogged = tally(records, ["a@x.test"], 1, {"x.test": ["a@x.test", "z@x.test"]}, SENDER)
    assert not unlogged.accounted and "z@x.test" in unlogged.received_problem


def test_undelivered_dsn_is_not_accounted() -> None:
    records = [
        out("received", "c@z.test", 1.0),
        out("bounced", "c@z.test", 2.0, code=550, enhanced="5.1.2", text="5.1.2 no domain"),
        {"event": "dsn", "rcpt": SENDER, "ts": 2.1},
    ]
    s = tally(records, ["c@z.test"], 1, {}, SENDER)
    assert s.bounce_reasons == {"no such domain (550 5.1.2)": 1}
    assert s.pending == 0 and s.received_ok and not s.accounted
