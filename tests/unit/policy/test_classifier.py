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
    text_shape,
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


def test_results_are_cached_and_the_caches_stay_bounded() -> None:
    c = Classifier([user("a", "SpamBlock", text="blocked"), user("b", "SpamRelated", text="#")])
    first = c.classify(R, "", 550, "5.7.1", "blocked 1")
    assert c.classify(R, "", 550, "5.7.1", "blocked 1") is first
    for i in range(CACHE_SIZE + 10):
        c.classify(R, "", 550, "5.7.1", f"blocked {i}")
    assert len(c._exact) <= CACHE_SIZE and len(c._shapes) <= CACHE_SIZE
    assert c.classify(R, "", 550, "5.7.1", "blocked 1") == first  # recomputed, same answer


def test_rules_see_the_shape_of_a_text_so_one_result_serves_every_recipient() -> None:
    c = Classifier(
        [user("ids", "SpamRelated", text="rejected at #$"), user("r", "SpamBlock", code=550)]
    )
    texts = [
        "5.1.1 <bob@dest.test>: Recipient address rejected at 192.0.2.1",
        "5.1.1 <ann.lee+x@dest.test>: Recipient address rejected at 10.11.12.13",
        "5.1.1 <jo@dest.test>: Recipient address rejected at mx12.dest.test",
    ]
    assert text_shape(texts[0], "5.1.1") == "5.1.1 <#>: Recipient address rejected at #"
    assert {text_shape(t, "5.1.1") for t in texts} == {text_shape(texts[0], "5.1.1")}
    got = [c.classify(R, "", 550, "5.1.1", t) for t in texts]
    assert got == [Classification(Category.SpamRelated, "ids")] * 3
    assert len(c._shapes) == 1 and len(c._exact) == 3  # the rules were walked once
    # Short codes are words of the text, not ids: they stay.
    kept = "5.7.1 [BL21] (S3150) 554.30 5.7.515"
    assert text_shape(kept, "5.7.1") == kept
    gmail = "5.1.1 NoSuchUser 41be03b00d2f7-7e8b6e2b3f1si1234567a12.123 - gsmtp"
    assert text_shape(gmail, "5.1.1") == "5.1.1 NoSuchUser # - gsmtp"


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
    """What engine.policy.classifier's docstring quotes, as ratios (the machine is
    shared): walking the shipped rules costs more than 3x a hit by shape, which costs
    more than 3x a hit by the exact text.  Measured here: ~150 µs, ~15 µs, ~0.5 µs."""
    c = default_classifier()
    text = (
        "5.1.1 The email account that you tried to reach does not exist. Please try "
        "5.1.1 double-checking the recipient's email address for typos or unnecessary "
        "5.1.1 spaces. https://support.google.com/mail/?p=NoSuchUser 41be03b00d2f7-7e8b6e2b3f1"
    )

    def walk() -> None:
        c._exact.clear()
        c._shapes.clear()
        c.classify(R, "", 550, "5.1.1", text)

    def by_shape() -> None:
        c._exact.clear()
        c.classify(R, "", 550, "5.1.1", text)

    def exact() -> None:
        c.classify(R, "", 550, "5.1.1", text)

    n = 300
    walk_s, shape_s, exact_s = (
        min(timeit.repeat(f, number=n, repeat=3)) / n for f in (walk, by_shape, exact)
    )
    assert walk_s > 3 * shape_s > 9 * exact_s, (walk_s, shape_s, exact_s)
