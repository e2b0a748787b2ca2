"""engine/policy/bounce_rules.toml, the shipped rules: a real failure for every rule, each
classified by that very rule on the way Volley really builds outcomes (replies parsed from
the wire by engine.smtp, failures described by engine.sched.classify), every category
reachable, and providers' replies as they send them.

When you add a rule, add its samples to SAMPLES: the first test fails until you do.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from engine.model import (
    ConnectFailure,
    Disposition,
    FailureKind,
    Origin,
    Phase,
    RecipientOutcome,
    RouteFailure,
    RouteFailureKind,
    Transaction,
    TransportFailure,
    TxnResult,
)
from engine.policy.categories import Category, Classification
from engine.policy.classifier import default_classifier
from engine.policy.rules import shipped_rules
from engine.runtime.outcome import classified
from engine.sched.classify import (
    classify_connect_failure,
    classify_route_failure,
    classify_txn,
    expire,
    precheck,
    refuse_unsendable,
)
from engine.smtp.replies import Reply, ReplyParser

TXN = Transaction("news@sender.test", ("bob@dest.test",), b"Subject: x\r\n\r\nhi\r\n")


@dataclass(frozen=True)
class Dsn:
    """An asynchronous bounce's Status and Diagnostic-Code fields."""

    status: str | None
    diagnostic: str | None


Sample = str | Dsn | Callable[[], RecipientOutcome]


def reply(raw: str) -> Reply:
    """One reply as engine.smtp reads it off the wire ("\\n" separates lines)."""
    wire = "".join(line + "\r\n" for line in raw.split("\n")).encode()
    (got,) = ReplyParser().feed(wire)
    return got


def at_rcpt(raw: str) -> RecipientOutcome:
    """The outcome of `raw` as the reply to RCPT TO (engine.sched.classify)."""
    result = TxnResult(Reply(250, ("2.1.0 ok",)), (reply(raw),), None, None)
    (outcome,) = classify_txn(TXN, result)
    return outcome


def transport(kind: FailureKind, phase: Phase, detail: str = "") -> Callable[[], RecipientOutcome]:
    failure = TransportFailure(phase, kind, detail)
    return lambda: classify_connect_failure(
        ["bob@dest.test"], ConnectFailure("mx1.dest.test", "192.0.2.1", failure=failure)
    )[0]


def route(kind: RouteFailureKind, detail: str = "") -> Callable[[], RecipientOutcome]:
    failure = RouteFailure("dest.test", kind, detail)
    return lambda: classify_route_failure(["bob@dest.test"], failure)[0]


def greeting(raw: str) -> Callable[[], RecipientOutcome]:
    """A refusal of the session itself (a 5xx greeting is deferred, still classified)."""
    refusal = ConnectFailure("mx1.dest.test", "192.0.2.1", reply=reply(raw))
    return lambda: classify_connect_failure(["bob@dest.test"], refusal)[0]


def classify(sample: Sample) -> Classification:
    if isinstance(sample, Dsn):
        return default_classifier().classify_dsn(sample.status, sample.diagnostic)
    outcome = at_rcpt(sample) if isinstance(sample, str) else sample()
    got = classified(outcome, default_classifier()).classification
    assert got is not None
    return got


def _expired() -> RecipientOutcome:
    return expire(at_rcpt("450 4.2.0 mailbox busy"), 5 * 86400)


def _operator() -> RecipientOutcome:
    text = "bounced by the operator: list cleanup"
    return RecipientOutcome(
        "bob@dest.test", Disposition.BOUNCED, 550, "5.0.0", text, Origin.OPERATOR
    )


def _local_error() -> RecipientOutcome:
    text = "local error: RuntimeError: boom"
    return RecipientOutcome("bob@dest.test", Disposition.DEFERRED, 451, "4.3.0", text, Origin.LOCAL)


def _too_big() -> RecipientOutcome:
    refused = precheck(TXN, smtputf8=True, size_limit=4)
    assert refused is not None
    return refused[0]


def _needs_smtputf8() -> RecipientOutcome:
    txn = Transaction("news@sender.test", ("bøb@dest.test",), b"x\r\n", smtputf8=True)
    refused = precheck(txn, smtputf8=False, size_limit=None)
    assert refused is not None
    return refused[0]


def _unsendable_recipient() -> RecipientOutcome:
    txn = Transaction("news@sender.test", ("bob@dest.test\r\nRCPT TO:<x@y>",), b"x\r\n")
    split = refuse_unsendable(txn)
    assert split is not None
    return split[0][0]


# rule id -> real failures that rule classifies (providers' replies verbatim where known;
# KumoMTA's assets/community/bounces.toml names the source of many).
SAMPLES: dict[str, list[Sample]] = {
    "volley-expired": [_expired],
    "volley-operator": [_operator],
    "volley-null-mx": [route(RouteFailureKind.NULL_MX)],
    "volley-no-such-domain": [route(RouteFailureKind.NO_SUCH_DOMAIN, "NXDOMAIN")],
    "volley-no-route": [
        route(RouteFailureKind.NO_ROUTE, "mx1.dest.test: no address"),
        route(RouteFailureKind.LOOP),
    ],
    "volley-dns-temporary": [route(RouteFailureKind.TEMPORARY, "SERVFAIL")],
    "volley-sts-policy": [route(RouteFailureKind.POLICY, "mx1.dest.test not in the policy")],
    "volley-no-answer": [
        transport(FailureKind.TIMEOUT, Phase.CONNECT, "no answer in 30s"),
        transport(FailureKind.TIMEOUT, Phase.GREETING),
    ],
    "volley-refused": [transport(FailureKind.REFUSED, Phase.CONNECT, "Connection refused")],
    "volley-bad-connection": [
        transport(FailureKind.TIMEOUT, Phase.BODY, "no reply to end of data in 600s"),
        transport(FailureKind.CLOSED, Phase.RCPT, "connection reset by peer"),
    ],
    "volley-protocol": [transport(FailureKind.PROTOCOL, Phase.EHLO, "reply over 200 lines")],
    "volley-tls": [transport(FailureKind.TLS, Phase.STARTTLS, "certificate verify failed")],
    "volley-interrupted": [
        transport(FailureKind.CANCELLED, Phase.MAIL, "shutting down"),
        transport(FailureKind.LOCAL, Phase.MAIL),
    ],
    "volley-local-error": [_local_error],
    "dsn-auto-reply": [
        Dsn(None, "I am out of the office until Monday"),
        Dsn(None, "Automatic reply: Spring sale"),
    ],
    "dsn-challenge-response": [
        Dsn(None, "Please verify you are a human by replying to this message"),
        Dsn(None, "This is a challenge-response system"),
    ],
    "dsn-unsubscribe": [Dsn(None, "unsubscribe"), Dsn(None, "Remove me from this list")],
    "dsn-subscribe": [Dsn(None, "subscribe newsletter")],
    "gmail-receiving-rate": [
        "452-4.2.1 The user you are trying to contact is receiving mail at a rate that\n"
        "452-4.2.1 prevents additional messages from being delivered. Please resend your\n"
        "452 4.2.1 message at a later time. https://support.google.com/mail/?p=ReceivingRate",
    ],
    "gmail-over-quota-perm": [
        "552-5.2.2 The recipient's inbox is out of storage space and inbound mail cannot be\n"
        "552-5.2.2 delivered. Please direct the recipient to\n"
        "552 5.2.2 https://support.google.com/mail/?p=OverQuotaPerm",
    ],
    "url-listed": [
        "550 5.7.1 A URL in this email (bad.example) is listed on https://spamrl.com/."
        " Please resolve and retry",
        "554 5.7.1 Service unavailable; Sender address [x@y] blocked using dbl.spamhaus.org",
    ],
    "spam-blocklist": [
        "550 5.7.1 Unfortunately, messages from [192.0.2.1] weren't sent. Please contact your"
        " Internet service provider since part of their network is on our block list"
        " (S3150). You can also refer your provider to http://mail.live.com/mail/troubleshooting.aspx#errors.",
        "553 5.7.1 [BL21] Connections will not be accepted from 192.0.2.1, because the ip is"
        " in Spamhaus's list; see http://postmaster.yahoo.com/errors/550-bl21.html",
        "554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org",
        "553 5.0.3 flph829 DNSBL:RBL 521< 192.0.2.1 >_is_blocked",  # AT&T
    ],
    "spam-ip-blocked": [
        "550 5.7.606 Access denied, banned sending IP [192.0.2.1]. To request removal from this"
        " list please visit https://sender.office.com/ and follow the directions.",
        "550 5.7.708 Service unavailable. Access denied, traffic not accepted from this IP.",
    ],
    "spam-reputation": [
        "421-4.7.0 [192.0.2.1      15] Our system has detected an unusual rate of\n"
        "421-4.7.0 unsolicited mail originating from your IP address. To protect our\n"
        "421 4.7.0 users from spam, mail sent from your IP address has been temporarily rate"
        " limited.",
        "451 4.7.650 The mail server [192.0.2.1] has been temporarily rate limited due to IP"
        " reputation.",
        "421 4.7.1 [TS03] All messages from 192.0.2.1 will be permanently deferred; Retrying"
        " will NOT succeed. See https://postmaster.yahooinc.com/error-codes",
    ],
    "volume": [
        "421 4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred due to unexpected"
        " volume or user complaints - 4.16.55.1; see https://postmaster.yahooinc.com/error-codes",
        "421-4.7.28 Gmail has detected an unusual rate of mail originating from your SPF\n"
        "421 4.7.28 domain [sender.test      20].",
    ],
    "virus": [
        "552-5.7.0 This message was blocked because its content presents a potential\n"
        "552-5.7.0 security issue. Please visit https://support.google.com/mail/?p=BlockedMessage\n"
        "552 5.7.0 to review our message content and attachment content guidelines.",
        "554 5.7.1 Message rejected: virus found (Eicar-Test-Signature)",
    ],
    "prohibited-attachment": [
        "552 5.3.4 Attachment not allowed: invoice.exe",
        "554 5.7.1 This message contains a prohibited attachment",
    ],
    "spam-content": [
        "550-5.7.1 [192.0.2.1] Our system has detected that this message is likely\n"
        "550 5.7.1 unsolicited mail. To reduce the amount of spam sent to Gmail, this message"
        " has been blocked.",
        "554 5.7.1 Message contains Spam Content",  # blueyonder.co.uk
        "550 5.7.1 message content rejected due to spam",  # icloud.com
    ],
    "relay-denied": [
        "554 5.7.1 <bob@dest.test>: Relay access denied",
        "550 5.7.54 SMTP; Unable to relay recipient in non-accepted domain",
    ],
    "relaying-issues": [
        '451 4.4.0 Primary target IP address responded with: "421 4.4.2 Connection dropped."'
        " Attempted failover to alternate host, but that did not succeed.",
    ],
    "authentication": [
        "550-5.7.26 This mail has been blocked because the sender is unauthenticated. Gmail\n"
        "550 5.7.26 requires all senders to authenticate with either SPF or DKIM.",
        "550 5.7.515 Access denied, sending domain [SENDER.TEST] doesn't meet the required"
        " authentication level.",
        "450 4.7.1 Client host rejected: cannot find your hostname, [192.0.2.1]",
        "550-5.7.25 [192.0.2.1] The IP address sending this message does not have a PTR record\n"
        "550 5.7.25 setup, or the corresponding forward DNS entry does not point to the"
        " sending IP.",
    ],
    "invalid-sender": [
        "450 4.1.8 <news@sender.test>: Sender address rejected: Domain not found",
        "553 5.1.8 Domain of sender address news@sender.test does not exist",
    ],
    "ms-directory-edge-block": [
        "550 5.4.1 Recipient address rejected: Access denied. AS(201806281)"
        " [DM6NAM11FT014.eop-nam11.prod.protection.outlook.com]",
    ],
    "yahoo-policy": [
        "554 5.7.9 Message not accepted for policy reasons.  See"
        " https://help.yahoo.com/kb/postmaster/SLN7253.html",
    ],
    "inactive-mailbox": [
        "554 delivery error: dd Sorry your message to bob@dest.test cannot be delivered. This"
        " mailbox is disabled (554.30). - mta1234.mail.bf1.yahoo.com",
        "550 Account Closed, Please Remove",  # comcast.net
        "525 4.7.13 user account is disabled",
        "550-5.2.1 The email account that you tried to reach is disabled.\n"
        "550 5.2.1 https://support.google.com/mail/?p=DisabledUser",
    ],
    "quota": [
        "452-4.2.2 The recipient's inbox is out of storage space. Please direct the\n"
        "452 4.2.2 recipient to https://support.google.com/mail/?p=OverQuotaTemp",
        "452 4.2.2 Mailbox over quota",
        "552 5.2.2 Mailbox full",
        "552 Mailbox limit exeeded for this email address",
    ],
    "too-many-recipients": ["452 4.5.3 Too many recipients"],
    "ms-recipient-not-found": [
        "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup",
    ],
    "unrouteable": ["550 Unrouteable address"],
    "unknown-recipient": [
        "550 5.5.0 Requested action not taken: mailbox unavailable (S2017062302).",
        "550 5.1.1 <bob@dest.test>: Recipient address rejected: User unknown in virtual"
        " mailbox table",
        "552 1 Requested mail action aborted, mailbox not found",  # Yahoo
        "554 delivery error: dd This user doesn't have a yahoo.com account (bob@yahoo.com)"
        " [0] - mta1234.mail.bf1.yahoo.com",
        "550 no such user here",
    ],
    "content": ["554 5.6.0 content rejected", "550 Message refused due to its content"],
    "spam-other": ["550 Rejected: junk mail", "554 5.7.0 Rejected by our spam filter"],
    "policy": [
        "550 5.7.1 Message rejected due to local policy",
        "421 4.7.0 Try again later, closing connection. (rate limited)",
        "550-5.7.1 [192.0.2.1] The IP you're using to send mail is not authorized to send\n"
        "550 5.7.1 email directly to our servers. Please use the SMTP relay at your service"
        " provider instead.",
    ],
    "greylisted": [
        "450 4.2.0 <bob@dest.test>: Recipient address rejected: Greylisted, see"
        " http://postgrey.schweikert.ch/help/dest.test.html",
        "421 4.7.500 Server busy. Please try again later from [192.0.2.1]. (S77714)",
        "451 4.3.0 queue full",
    ],
    "bad-sequence": ["503 Bad sequence of commands", "500 5.5.2 Syntax error"],
    "iana-invalid-recipient": [
        "550-5.1.1 The email account that you tried to reach does not exist. Please try\n"
        "550-5.1.1 double-checking the recipient's email address for typos or\n"
        "550 5.1.1 unnecessary spaces. https://support.google.com/mail/?p=NoSuchUser",
        "550 5.7.17 Mailbox owner has changed",
        _unsendable_recipient,
    ],
    "iana-bad-domain": ["556 5.1.10 Recipient address has a null MX", "550 5.1.2 Host unknown"],
    "iana-inactive": ["550 5.1.6 Recipient has moved; no forwarding address"],
    "iana-invalid-sender": ["553 5.1.7 The sender address is malformed"],
    "iana-quota": [_too_big, "552 5.3.4 Message size exceeds fixed maximum message size"],
    "iana-system-config": ["554 5.3.5 System incorrectly configured"],
    "iana-not-accepting": ["451 4.4.5 Congestion", "421 4.3.2 System shutting down"],
    "iana-no-answer": ["451 4.4.1 No answer from host"],
    "iana-bad-connection": ["421 4.4.2 closing"],
    "iana-dns": ["451 4.4.3 Directory server failure"],
    "iana-routing": ["554 5.4.6 Routing loop detected", "550 5.4.4 Unable to route"],
    "iana-expired": ["550 5.4.7 Delivery time expired"],
    "iana-too-many-recipients": ["451 4.5.3 Limit reached, come back in a new transaction"],
    "iana-protocol": [_needs_smtputf8, "554 5.6.1 Media not supported"],
    "iana-mail-flood": ["550 5.7.28 Flood detected"],
    "iana-authentication": ["550 5.7.20 No passing signature found"],
    "iana-not-authorized": ["550 5.7.1 Delivery not authorised, message refused"],
    "basic-421": [greeting("421 mx1.dest.test closing")],
}

ALL = [(rule_id, i, s) for rule_id, samples in SAMPLES.items() for i, s in enumerate(samples)]


def test_every_shipped_rule_has_samples_and_ids_are_unique() -> None:
    ids = [r.id for r in shipped_rules()]
    assert len(ids) == len(set(ids))
    assert set(SAMPLES) == set(ids)
    assert all(SAMPLES.values())


@pytest.mark.parametrize(("rule_id", "i", "sample"), ALL, ids=[f"{r}[{i}]" for r, i, _ in ALL])
def test_each_sample_is_classified_by_its_rule(rule_id: str, i: int, sample: Sample) -> None:
    rule = next(r for r in shipped_rules() if r.id == rule_id)
    assert classify(sample) == Classification(rule.category, rule_id)


def test_every_category_is_reachable() -> None:
    reached = {r.category for r in shipped_rules()} | {Category.Uncategorized}
    assert reached == set(Category)


# Providers' replies and KumoMTA's own test corpus (crates/bounce-classify/src/lib.rs,
# test_bounce_classify_iana), by category rather than rule.  KumoMTA's corpus mixes
# classes ("552 4.2.2"), which engine.smtp does not take as an enhanced code in a reply
# (RFC 3463: the class must be the reply's); a DSN's Status field carries them as given.
REAL_WORLD: list[tuple[Sample, Category]] = [
    ("552 5.2.2 mailbox is stuffed", Category.QuotaIssues),
    (Dsn("4.2.2", "smtp; 552 4.2.2 mailbox is stuffed"), Category.QuotaIssues),
    (Dsn("4.7.13", "smtp; 525 4.7.13 user account is disabled"), Category.InactiveMailbox),
    (Dsn("4.7.17", "smtp; 551 4.7.17 mailbox owner has changed"), Category.InvalidRecipient),
    (Dsn("4.7.18", "smtp; 551 4.7.18 domain owner has changed"), Category.BadDomain),
    ("550 5.1.1 no such user (test)", Category.InvalidRecipient),  # the mini internet's
    ("450 4.2.0 mailbox busy (test)", Category.TransientFailure),
    ("451 4.3.0 try again (test)", Category.TransientFailure),
    ("554 5.6.0 content rejected (test)", Category.ContentRelated),
    ("421 4.4.2 closing (test)", Category.BadConnection),
    (
        "550 5.7.1 Service unavailable, Client host [192.0.2.1] blocked using Spamhaus",
        Category.SpamBlock,
    ),
    (
        "550 5.7.26 Unauthenticated email from sender.test is not accepted due to domain's"
        " DMARC policy",
        Category.AuthenticationFailed,
    ),
    ("550 5.9.9 something nobody has seen", Category.Uncategorized),
]


@pytest.mark.parametrize(("sample", "category"), REAL_WORLD)
def test_real_world_replies(sample: Sample, category: Category) -> None:
    assert classify(sample).category is category


def test_an_unmatched_failure_is_uncategorized_with_no_rule() -> None:
    assert classify("550 5.9.9 something nobody has seen") == Classification(Category.Uncategorized)
