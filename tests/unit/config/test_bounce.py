"""[bounce] settings: inline rules and a rules file, in front of the shipped ones; every
mistake one line naming the key; the rules travel to workers inline; a reload applies an
edited file."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.config import BounceSettings, ConfigError, from_dict, load_settings
from engine.model import Origin
from engine.policy.categories import Category, Classification
from engine.policy.classifier import default_classifier
from engine.policy.rules import shipped_rules
from engine.runtime.reload import plan_reload

BLOCK = "5.7.1 Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org"


def block(settings: object) -> Classification:
    return settings.bounce.classifier.classify(Origin.REPLY, "", 554, "5.7.1", BLOCK)  # type: ignore[attr-defined]


def test_no_section_means_the_shipped_rules() -> None:
    s = from_dict({})
    assert s.bounce == BounceSettings()
    assert s.bounce.classifier is default_classifier()
    assert block(s).rule == "spam-blocklist"
    assert s.to_dict()["bounce"] == {"rules": []}


def test_inline_rules_then_the_file_then_the_shipped_ones(tmp_path: Path) -> None:
    rules = tmp_path / "bounces.toml"
    rules.write_text(
        '[[rules]]\ncategory = "PolicyRelated"\ntext = "spamhaus"\n\n'
        '[[rules]]\nid = "mine"\ncategory = "QuotaIssues"\ncode = 552\n'
    )
    config = tmp_path / "volley.toml"
    config.write_text(
        f'[bounce]\nrules_file = "{rules}"\n\n'
        '[[bounce.rules]]\ncategory = "TransientFailure"\ntext = "zen\\\\.spamhaus"\n'
    )
    s = load_settings(config)
    assert [r.id for r in s.bounce.rules] == ["bounce.rules[0]", "bounces.toml[0]", "mine"]
    assert block(s) == Classification(Category.TransientFailure, "bounce.rules[0]")
    assert s.bounce.classifier.rules[3:] == shipped_rules()
    assert s.bounce.rules_file == rules


def test_a_user_rule_with_a_shipped_id_replaces_it() -> None:
    s = from_dict(
        {"bounce": {"rules": [{"id": "spam-blocklist", "category": "SpamRelated", "code": 599}]}}
    )
    assert len(s.bounce.classifier.rules) == len(shipped_rules())
    assert block(s).rule == "iana-not-authorized"  # the next rule down, now


def test_the_rules_travel_inline_and_compare_equal(tmp_path: Path) -> None:
    rules = tmp_path / "bounces.toml"
    rules.write_text('[[rules]]\ncategory = "PolicyRelated"\ntext = "spamhaus"\n')
    s = from_dict({"bounce": {"rules_file": str(rules)}})
    tree = s.to_dict()
    assert tree["bounce"] == {
        "rules": [{"id": "bounces.toml[0]", "category": "PolicyRelated", "text": "spamhaus"}]
    }
    rules.unlink()  # a worker never reads the file: the supervisor did
    again = from_dict(tree)
    assert again == s
    assert block(again) == Classification(Category.PolicyRelated, "bounces.toml[0]")


def test_a_reload_applies_an_edited_rules_file(tmp_path: Path) -> None:
    rules = tmp_path / "bounces.toml"
    rules.write_text('[[rules]]\ncategory = "PolicyRelated"\ntext = "spamhaus"\n')
    running = from_dict({"bounce": {"rules_file": str(rules)}})
    rules.write_text('[[rules]]\ncategory = "SpamRelated"\ntext = "spamhaus"\n')
    plan = plan_reload(running, from_dict({"bounce": {"rules_file": str(rules)}}))
    assert plan.applied == ("bounce.rules",) and plan.at_restart == ()
    assert block(plan.settings).category is Category.SpamRelated


BAD = [
    (
        {"rules": [{"category": "SpamBlok", "text": "x"}]},
        "bounce.rules[0].category: unknown category 'SpamBlok'",
    ),
    (
        {"rules": [{"category": "SpamBlock", "text": "(x"}]},
        "bounce.rules[0].text: bad regular expression",
    ),
    (
        {"rules": [{"category": "SpamBlock", "code": 550}, {"category": "SpamBlock", "cod": 5}]},
        "bounce.rules[1].cod: unknown key",
    ),
    ({"rules": {"category": "SpamBlock"}}, "bounce.rules: expected an array of tables"),
    (
        {"rules": [{"id": "a", "category": "SpamBlock", "code": 550}] * 2},
        "bounce.rules[1]: rule id 'a' is also used by bounce.rules[0]",
    ),
    ({"rules_file": 5}, "bounce.rules_file: expected a file path"),
    (
        {"rules_file": "/nonexistent/bounces.toml"},
        "bounce.rules_file: cannot read /nonexistent/bounces.toml",
    ),
    ({"rule": []}, "unknown configuration key: bounce.rule"),
]


@pytest.mark.parametrize(("section", "message"), BAD)
def test_a_bad_setting_is_one_line_naming_the_key(section: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        from_dict({"bounce": section})
    assert str(err.value).startswith(message), str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            '[[rules]]\ncategory = "Nope"\ncode = 550\n',
            "rules[0].category: unknown category 'Nope'",
        ),
        ("[[rules]\n", "Expected ']]'"),
        ("[other]\nx = 1\n", "other: unknown key"),
    ],
)
def test_a_bad_rules_file_names_the_file_and_the_rule(
    tmp_path: Path, content: str, message: str
) -> None:
    rules = tmp_path / "bounces.toml"
    rules.write_text(content)
    with pytest.raises(ConfigError) as err:
        from_dict({"bounce": {"rules_file": str(rules)}})
    assert str(err.value).startswith(f"bounce.rules_file: {rules}: "), str(err.value)
    assert message in str(err.value)


def test_a_file_rule_may_not_reuse_an_inline_id(tmp_path: Path) -> None:
    rules = tmp_path / "bounces.toml"
    rules.write_text('[[rules]]\nid = "x"\ncategory = "SpamBlock"\ncode = 554\n')
    with pytest.raises(
        ConfigError, match=r"^bounce\.rules_file: .*rule id 'x' is also used by bounce\.rules\[0\]"
    ):
        from_dict(
            {
                "bounce": {
                    "rules_file": str(rules),
                    "rules": [{"id": "x", "category": "SpamBlock", "code": 553}],
                }
            }
        )
