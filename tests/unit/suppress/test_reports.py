"""engine.suppress.reports: complaints -> entries scoped to the sender domain; async bounces."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.config import Settings
from engine.feedback.inbox import Stored
from engine.feedback.parse import parse_report
from engine.feedback.report import Complaint, FeedbackKind, FeedbackReport
from engine.suppress.client import SuppressClient
from engine.suppress.feed import BounceFeed
from engine.suppress.model import GLOBAL, Entry, Source
from engine.suppress.reports import complaint_entries, failed_recipients, report_hook
from engine.telemetry.metrics import CheckedTally
from engine.unsubscribe.token import Keyring, make_token
from tests.unit.suppress.test_feed import Reader

SAMPLES = Path(__file__).resolve().parents[1] / "feedback" / "samples"
T = 1_800_000_000.0


def sample(name: str) -> tuple[bytes, FeedbackReport]:
    raw = (SAMPLES / name).read_bytes().replace(b"\n", b"\r\n")
    return raw, parse_report(raw)


def test_a_yahoo_complaint_is_scoped_to_the_from_domain() -> None:
    raw, report = sample("yahoo_cfl.eml")
    [e] = complaint_entries(raw, report, T)
    assert e == Entry(
        "reader.one@yahoo.com",
        "example.com",  # the returned message's From, not bounces.example.com
        "complaint: abuse via Yahoo!-Mail-Feedback/2.0",
        Source.COMPLAINT,
        T,
    )


def test_scope_fallbacks_and_what_adds_nothing() -> None:
    def report(**kw: Any) -> FeedbackReport:
        c = Complaint(feedback_type=kw.pop("ftype", "abuse"), original_rcpt_to=("a@x.test",), **kw)
        return FeedbackReport(kind=FeedbackKind.COMPLAINT, complaint=c)

    assert (
        complaint_entries(b"", report(reported_domain="Brand.Example"), T)[0].scope
        == "brand.example"
    )
    got = complaint_entries(b"", report(original_mail_from="b@bounces.brand.example"), T)
    assert got[0].scope == "bounces.brand.example"
    assert complaint_entries(b"", report(), T)[0].scope == GLOBAL  # fully redacted
    assert complaint_entries(b"", report(ftype="not-spam"), T) == []
    assert complaint_entries(b"", FeedbackReport(kind=FeedbackKind.DELIVERY_NOTICE), T) == []


async def test_async_bounces_and_the_hook() -> None:
    raw, report = sample("postfix_user_unknown.eml")
    failed = failed_recipients(report)
    assert failed and failed[0][1] == "5.1.1"
    sent: list[Any] = []
    client = SuppressClient(lambda *m: sent.append(m))
    hook = report_hook(client, BounceFeed(Settings(), client, Reader([])), lambda: T)
    stored = Stored("n1", raw, "", ("b@bounces.test",), "127.0.0.1", T)
    assert hook(stored, report) is None  # an async bounce: an event for the rules
    client.flush()
    assert sent[0][0] == "suppress_events" and sent[0][1][0][0] == "InvalidRecipient"
    raw, complaint = sample("yahoo_cfl.eml")
    ack = hook(Stored("n2", raw, "", ("b@bounces.test",), "127.0.0.1", T), complaint)
    assert ack is not None and not ack.done()  # the file waits for the supervisor's commit
    assert sent[-1][0] == "suppress" and sent[-1][2][0][0] == "reader.one@yahoo.com"
    client.answered(sent[-1][1], None)
    await ack


async def test_a_mailto_unsubscribe_is_verified_by_its_token_and_sent_for_commit() -> None:
    ring = Keyring((b"k" * 64,))
    sent: list[Any] = []
    client = SuppressClient(lambda *m: sent.append(m))
    tally = CheckedTally()
    hook = report_hook(client, BounceFeed(Settings(), client, Reader([])), lambda: T, ring, tally)
    token = make_token(ring, "reader@x.test", "sender.test", "weekly")

    def mail(subject: str) -> Stored:
        raw = f"From: anyone@else.test\r\nSubject: {subject}\r\n\r\n".encode()
        return Stored("u1", raw, "anyone@else.test", ("unsub@b.test",), "127.0.0.1", T)

    unsubscribe = FeedbackReport(FeedbackKind.UNSUBSCRIBE)
    assert hook(mail("unsubscribe " + token[:-3] + "AAA"), unsubscribe) is None  # forged
    assert hook(mail("hello"), unsubscribe) is None  # no token
    assert sent == []
    ack = hook(mail("Re: unsubscribe " + token), unsubscribe)
    assert ack is not None
    kind, req, entries = sent[-1]
    assert kind == "suppress" and entries[0][:2] == ["reader@x.test", "sender.test"]
    client.answered(req, None)
    await ack
    counts, _, _ = tally.drain()
    got = {tuple(c[1]): c[2] for c in counts if c[0] == "volley_unsubscribe_requests"}
    assert got == {("forged",): 1, ("malformed",): 1, ("unsubscribed",): 1}
