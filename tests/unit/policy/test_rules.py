"""engine.policy.rules: what a rule matches, and every way a rule table can be wrong."""

from __future__ import annotations

from typing import Any

import pytest

from engine.model import Origin
from engine.policy.categories import Category, Classification
from engine.policy.rules import MAX_TEXT, RuleError, parse_rule, parse_rules, shipped_rules


def rule(**table: Any) -> Any:
    return parse_rule({"id": "r", **table}, "rules[0]")


def matches(
    r: Any,
    origin: Origin = Origin.REPLY,
    kind: str = "",
    code: int = 550,
    enhanced: str = "5.1.1",
    text: str = "5.1.1 no such user",
) -> bool:
    return bool(r.matches(origin, kind, code, enhanced, text))


def test_every_condition_must_hold_and_any_value_of_a_list_will_do() -> None:
    r = rule(category="InvalidRecipient", code=[550, "55x"], enhanced="x.1.", text="no such")
    assert r.result == Classification(Category.InvalidRecipient, "r")
    assert matches(r) and matches(r, code=553, enhanced="4.1.2", text="No Such thing")
    assert not matches(r, code=450)  # "55x" and 550 only
    assert not matches(r, enhanced="5.2.1")
    assert not matches(r, text="unknown user")


def test_code_patterns_expand_to_every_code_they_stand_for() -> None:
    r = rule(category="TransientFailure", code="4xx")
    assert all(matches(r, code=c) for c in (400, 421, 451, 499))
    assert not matches(r, code=550) and not matches(r, code=0)
    assert matches(rule(category="SpamBlock", code="x5x"), code=554)


def test_enhanced_exact_prefix_and_any_class() -> None:
    exact = rule(category="QuotaIssues", enhanced="5.2.2")
    assert matches(exact, enhanced="5.2.2") and not matches(exact, enhanced="4.2.2")
    assert not matches(exact, enhanced="5.2.22")  # exact means exact
    anyclass = rule(category="QuotaIssues", enhanced="x.2.2")
    assert matches(anyclass, enhanced="4.2.2") and matches(anyclass, enhanced="5.2.2")
    prefix = rule(category="AuthenticationFailed", enhanced="x.7.")
    assert matches(prefix, enhanced="4.7.26") and not matches(prefix, enhanced="5.1.7")
    both = rule(category="AuthenticationFailed", enhanced=["5.7.1", "4.7."])
    assert matches(both, enhanced="5.7.1") and matches(both, enhanced="4.7.0")
    assert not matches(both, enhanced="5.7.10")


def test_origin_and_kind() -> None:
    r = rule(category="NoAnswerFromHost", origin="connection", kind=["timeout", "refused"])
    assert matches(r, origin=Origin.CONNECTION, kind="refused")
    assert not matches(r, origin=Origin.CONNECTION, kind="closed")
    assert not matches(r, origin=Origin.REPLY, kind="refused")
    route = rule(category="BadDomain", origin=["route"], kind="null_mx")
    assert matches(route, origin=Origin.ROUTE, kind="null_mx")


def test_text_ignores_case_and_only_its_first_max_text_characters_count() -> None:
    r = rule(category="SpamBlock", text=r"block\s?list")
    assert matches(r, text="On our BLOCK LIST (S3150)")
    assert not matches(r, text="x" * MAX_TEXT + " blocklist")  # a 64 KiB reply's tail


def test_to_dict_reads_back_as_the_same_rule() -> None:
    for original in shipped_rules():
        again = parse_rule(original.to_dict(), "x")
        assert again.to_dict() == original.to_dict()
        assert (again.id, again.category, again.codes) == (
            original.id,
            original.category,
            original.codes,
        )


BAD: list[tuple[dict[str, Any], str]] = [
    (
        {"category": "InvalidRecipient", "code": 550, "colour": "red"},
        "rules[0].colour: unknown key",
    ),
    ({"code": 550}, "rules[0].category: missing"),
    (
        {"category": "SpamBlok", "code": 550},
        "rules[0].category: unknown category 'SpamBlok'; did you mean 'SpamBlock'?",
    ),
    ({"category": "SpamBlock"}, "rules[0]: a rule needs at least one of"),
    ({"category": "SpamBlock", "text": "fo(o"}, "rules[0].text: bad regular expression 'fo(o'"),
    ({"category": "SpamBlock", "text": ""}, "rules[0].text: expected a regular expression"),
    ({"category": "SpamBlock", "code": 650}, "rules[0].code: expected a reply code"),
    ({"category": "SpamBlock", "code": "5x"}, "rules[0].code: expected a reply code"),
    ({"category": "SpamBlock", "code": True}, "rules[0].code: expected a reply code"),
    (
        {"category": "SpamBlock", "code": []},
        "rules[0].code: expected a reply code or a non-empty list",
    ),
    ({"category": "SpamBlock", "enhanced": "5.1"}, "rules[0].enhanced: expected a code like"),
    ({"category": "SpamBlock", "enhanced": "6.1.1"}, "rules[0].enhanced: expected a code like"),
    ({"category": "SpamBlock", "enhanced": 5}, "rules[0].enhanced: expected a code like"),
    ({"category": "SpamBlock", "origin": "smtp"}, "rules[0].origin: unknown origin 'smtp'"),
    (
        {"category": "SpamBlock", "kind": "timeout"},
        'rules[0].kind: needs origin = "connection" or "route"',
    ),
    (
        {"category": "SpamBlock", "origin": "reply", "kind": "timeout"},
        "rules[0].kind: needs origin",
    ),
    (
        {"category": "SpamBlock", "origin": "route", "kind": "timeout"},
        "rules[0].kind: unknown kind 'timeout'",
    ),
    (
        {"category": "SpamBlock", "code": 550, "id": "has space"},
        "rules[0].id: expected a name without spaces",
    ),
]


@pytest.mark.parametrize(("table", "message"), BAD)
def test_a_bad_rule_is_one_line_naming_its_key(table: dict[str, Any], message: str) -> None:
    with pytest.raises(RuleError) as err:
        parse_rule({"id": "r", **table}, "rules[0]")
    assert str(err.value).startswith(message), str(err.value)
    assert "\n" not in str(err.value)


def test_a_rule_needs_an_id_unless_given_a_default() -> None:
    with pytest.raises(RuleError, match=r"^rules\[0\]\.id: missing"):
        parse_rule({"category": "SpamBlock", "code": 550}, "rules[0]")
    assert parse_rule({"category": "SpamBlock", "code": 550}, "k", "mine[3]").id == "mine[3]"


def test_a_rules_document() -> None:
    doc = {
        "rules": [
            {"category": "SpamBlock", "code": 554},
            {"id": "b", "category": "SpamBlock", "code": 553},
        ]
    }
    assert [r.id for r in parse_rules(doc, default_ids="f.toml")] == ["f.toml[0]", "b"]
    with pytest.raises(RuleError, match=r"^rules\[1\]\.id: 'a' is used by an earlier rule"):
        parse_rules({"rules": [{"id": "a", "category": "SpamBlock", "code": 554}] * 2})
    with pytest.raises(RuleError, match=r"^rule: unknown key"):
        parse_rules({"rule": []})
    with pytest.raises(RuleError, match=r"^rules: expected an array of tables"):
        parse_rules({"rules": {"category": "SpamBlock"}})
    assert parse_rules({}) == []
