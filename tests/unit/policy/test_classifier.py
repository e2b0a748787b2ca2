"""engine.policy.classifier: first match wins, user rules first (and replacing shipped
ones by id), the bounded cache, multi-line replies, asynchronous DSN fields."""

from __future__ import annotations

import timeit

from engine.model import Origin
from engine.policy import classifier as classifier_module
from engine.policy.categories import Category, Classification
from engine.policy.classifier import (
    CACHE_SIZE,
    UNCATEGORIZED,
    Classifier,
    classify_dsn,
    default_classifier,
)
from engine.policy.rules import parse_rule, shipped_rules

R = Origin.REPLY


def user(rule_id: str, category: str, **conditions: object) -> object:
    return parse_rule({"id": rule_id, "category": category, **conditions}, "bounce.rules[0]")


def test_the_first_matching_rule_wins() -> None:
    c = Classifier([user("a", "SpamBlock", text="blocked"), user("b", "PolicyRelated", code=550)])
    assert c.classify(R, "", 550, "5.7.1", "5.7.1 blocked") == Classification(
        Category.SpamBlock, "a"
    )
    assert c.classify(R, "", 550, "5.7.1", "5.7.1 policy") == Classification(
        Category.PolicyRelated, "b"
    )
    assert c.classify(R, "", 421, "4.0.0", "bye") is UNCATEGORIZED


def test_user_rules_come_first_and_replace_shipped_rules_with_their_id() -> None:
    text = "5.7.1 Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org"
    assert default_classifier().classify(R, "", 554, "5.7.1", text).rule == "spam-blocklist"
    # Demote a block to a transient class (KumoMTA's FAQ example, in Volley's terms).
    mine = user("temp-blocks", "TransientFailure", text="spamhaus")
    c = Classifier.with_user_rules([mine])
    assert c.classify(R, "", 554, "5.7.1", text) == Classification(
        Category.TransientFailure, "temp-blocks"
    )
    assert len(c.rules) == len(shipped_rules()) + 1
    # A user rule with a shipped rule's id replaces it: gone from its old place.
    replaced = user("spam-blocklist", "PolicyRelated", code=599)
    c = Classifier.with_user_rules([replaced])
    assert len(c.rules) == len(shipped_rules())
    assert c.rules[0] is replaced
    got = c.classify(R, "", 554, "5.7.1", text)
    assert got == Classification(Category.PolicyRelated, "iana-not-authorized")


def test_origin_rules_do_not_see_other_origins() -> None:
    c = default_classifier()
    timeout = "timed out during connect: mx1.dest.test[192.0.2.1]"
    got = c.classify(Origin.CONNECTION, "timeout", 451, "4.4.2", timeout)
    assert got == Classification(Category.NoAnswerFromHost, "volley-no-answer")
    # The same words in a server's reply are not a connection timeout.
    assert c.classify(R, "", 451, "4.4.2", timeout).rule == "iana-bad-connection"


def test_repeated_codes_of_a_multi_line_reply_do_not_split_its_words() -> None:
    c = default_classifier()
    text = "4.2.1 receiving mail at a rate that 4.2.1 prevents additional messages"
    assert c.classify(R, "", 452, "4.2.1", text).category is Category.TransientFailure


def test_results_are_cached_and_the_cache_stays_bounded() -> None:
    c = Classifier([user("a", "SpamBlock", text="blocked")])
    first = c.classify(R, "", 550, "5.7.1", "blocked 1")
    assert c.classify(R, "", 550, "5.7.1", "blocked 1") is first
    for i in range(CACHE_SIZE + 10):
        c.classify(R, "", 550, "5.7.1", f"blocked {i}")
    assert len(c._cache) <= CACHE_SIZE
    assert c.classify(R, "", 550, "5.7.1", "blocked 1") == first  # recomputed, same answer


def test_an_asynchronous_dsn_is_classified_from_its_fields() -> None:
    got = classify_dsn("5.1.1", "smtp; 550 5.1.1 <bob@dest.test>: Recipient address rejected")
    assert got == Classification(Category.InvalidRecipient, "iana-invalid-recipient")
    # The diagnostic's basic code counts: "550 ... mailbox unavailable" is a missing mailbox.
    got = classify_dsn("5.5.0", "smtp;550 5.5.0 Requested action not taken: mailbox unavailable")
    assert got.category is Category.InvalidRecipient
    # No usable Status: the enhanced code the diagnostic text starts with.
    assert classify_dsn("bogus", "smtp; 552 5.2.2 over the limit").category is Category.QuotaIssues
    assert classify_dsn(None, "X-Postfix; 5.1.2 host not found").category is Category.BadDomain
    # Nothing at all: uncategorized, never an error.
    assert classify_dsn(None, None) is UNCATEGORIZED
    assert classify_dsn("", "") is UNCATEGORIZED
    # Only asynchronous reports can be auto-replies.
    assert classify_dsn(None, "Out of office until Monday").category is Category.AutoReply
    assert default_classifier().classify(R, "", 550, "5.0.0", "Out of office").rule == ""


def test_a_users_classifier_is_passed_in() -> None:
    c = Classifier.with_user_rules([user("mine", "PolicyRelated", enhanced="5.1.1")])
    assert classify_dsn("5.1.1", "smtp; 550 5.1.1 unknown", c).rule == "mine"


def test_default_classifier_is_built_once() -> None:
    assert default_classifier() is default_classifier()
    assert classifier_module.default_classifier().rules == shipped_rules()


def test_cost_of_a_classification() -> None:
    """What engine.policy.classifier's docstring quotes: a hit is a dict lookup, a miss
    walks the rules.  Relative bounds only (the machine is shared): a hit costs less
    than a tenth of a miss over the shipped rules."""
    c = default_classifier()
    text = "5.7.1 This text matches no rule of the shipped file at all, 192.0.2.1"

    def miss() -> None:
        c._cache.clear()
        c.classify(R, "", 550, "5.9.9", text)

    def hit() -> None:
        c.classify(R, "", 550, "5.9.9", text)

    n = 2000
    miss_s = min(timeit.repeat(miss, number=n, repeat=3)) / n
    hit_s = min(timeit.repeat(hit, number=n, repeat=3)) / n
    assert hit_s < miss_s / 10, (hit_s, miss_s)
