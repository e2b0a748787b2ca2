"""The bounce categories: KumoMTA's names, as values.

Responsible for: `Category` (the fixed set of names a failure can be classified as, spelled
exactly as KumoMTA's `PreDefinedBounceClass` in crates/bounce-classify/src/lib.rs, so
tools written for KumoMTA's logs read Volley's) and `Classification` (a category plus the
id of the rule that chose it).
Not responsible for: choosing a category (engine.policy.classifier) or the rules
(engine.policy.rules, engine/policy/bounce_rules.toml).

Imports nothing from Volley: engine.model refers to these types, so this module must not
depend on anything that imports engine.model.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["Category", "Classification"]


class Category(enum.Enum):
    """Why a recipient failed.  The value is the name written to logs and metrics."""

    InvalidRecipient = "InvalidRecipient"  # the address does not exist
    DNSFailure = "DNSFailure"  # a DNS lookup failed
    SpamBlock = "SpamBlock"  # the sending IP or domain is blocked as a spam source
    SpamContent = "SpamContent"  # the message itself was judged spam
    ProhibitedAttachment = "ProhibitedAttachment"  # an attachment type is refused
    RelayDenied = "RelayDenied"  # the receiver does not relay for us
    AutoReply = "AutoReply"  # an auto-reply / vacation message (asynchronous)
    TransientFailure = "TransientFailure"  # temporarily delayed: greylisting, busy, try later
    Subscribe = "Subscribe"  # a subscribe request (asynchronous)
    Unsubscribe = "Unsubscribe"  # an unsubscribe request (asynchronous)
    ChallengeResponse = "ChallengeResponse"  # a challenge-response probe (asynchronous)
    BadConfiguration = "BadConfiguration"  # the receiving system is misconfigured
    BadConnection = "BadConnection"  # the connection broke or timed out mid-session
    BadDomain = "BadDomain"  # the recipient domain does not exist or takes no mail
    ContentRelated = "ContentRelated"  # refused for its content, not said to be spam
    InactiveMailbox = "InactiveMailbox"  # the mailbox exists but is disabled or expired
    InvalidSender = "InvalidSender"  # our sender address or its domain is refused
    MessageExpired = "MessageExpired"  # not delivered within max_age
    NoAnswerFromHost = "NoAnswerFromHost"  # no host answered, or none said hello
    PolicyRelated = "PolicyRelated"  # the receiver's policy: volume, rate, local rules
    ProtocolErrors = "ProtocolErrors"  # SMTP syntax, sequence or negotiation errors
    QuotaIssues = "QuotaIssues"  # mailbox full, message too large
    RelayingIssues = "RelayingIssues"  # a relay on the way could not pass the message on
    RoutingErrors = "RoutingErrors"  # no usable route to the recipient domain, loops
    SpamRelated = "SpamRelated"  # spam mentioned, neither the source nor the content named
    VirusRelated = "VirusRelated"  # a virus or malware was found
    AuthenticationFailed = "AuthenticationFailed"  # SPF, DKIM, DMARC, rDNS or SMTP AUTH
    TooManyRecipients = "TooManyRecipients"  # a per-transaction recipient limit
    Uncategorized = "Uncategorized"  # no rule matched


@dataclass(frozen=True, slots=True)
class Classification:
    """A failure's category and the rule that chose it ("" when none matched), so a
    surprising category can be traced to its rule (KumoMTA could not say which rule
    fired: https://github.com/KumoCorp/kumomta/pull/521)."""

    category: Category
    rule: str = ""
