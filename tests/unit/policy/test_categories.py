"""engine.policy.categories: KumoMTA's category names, exactly."""

from __future__ import annotations

from engine.policy.categories import Category, Classification

# KumoMTA's PreDefinedBounceClass (crates/bounce-classify/src/lib.rs @ 3ebc1e85), in its
# order: tools written for KumoMTA's logs must read Volley's names.
KUMOMTA = (
    "InvalidRecipient DNSFailure SpamBlock SpamContent ProhibitedAttachment RelayDenied "
    "AutoReply TransientFailure Subscribe Unsubscribe ChallengeResponse BadConfiguration "
    "BadConnection BadDomain ContentRelated InactiveMailbox InvalidSender MessageExpired "
    "NoAnswerFromHost PolicyRelated ProtocolErrors QuotaIssues RelayingIssues RoutingErrors "
    "SpamRelated VirusRelated AuthenticationFailed TooManyRecipients Uncategorized"
).split()


def test_the_names_are_kumomtas() -> None:
    assert [c.value for c in Category] == KUMOMTA
    assert all(c.name == c.value for c in Category)


def test_a_classification_without_a_rule() -> None:
    assert Classification(Category.Uncategorized).rule == ""
