"""Shaping automation rules: reading and checking them, the shipped ones on the replies
they cite, and user rules in front of the shipped ones."""

from __future__ import annotations

from typing import Any

import pytest

from engine.shaping.replies import ReplySample, Stage, reply_line
from engine.shaping.rules import (
    Action,
    Amount,
    Rule,
    RuleError,
    Scope,
    combine,
    load_shipped,
    read_rules,
)

T = Stage.TRANSACTION


def rule(**table: Any) -> Rule:
    base: dict[str, Any] = {"name": "r", "regex": "x", "action": "suspend", "duration": "1h"}
    return read_rules([{**base, **table}], "shaping.rules")[0]


def first(rules: list[Rule], code: int, enhanced: str | None, text: str) -> str | None:
    sample = ReplySample(code, enhanced, text, T)
    line = reply_line(sample)
    return next((r.name for r in rules if r.matches(code, line)), None)


def test_a_full_rule() -> None:
    r = rule(
        regex=r"\[TS?S04\]",
        codes=[421],
        scope="provider",
        trigger="3/10m",
        action="reduce",
        connections=0.5,
        rate="10/min",
        duration="90m",
    )
    assert (r.scope, r.count, r.window, r.action, r.duration) == (
        Scope.PROVIDER,
        3,
        600.0,
        Action.REDUCE,
        5400.0,
    )
    assert r.connections == Amount(0.5, fraction=True)
    assert r.rate == Amount(10 / 60, fraction=False)
    assert r.matches(421, "421 4.7.0 [TSS04] Messages deferred")
    assert r.matches(421, "421 4.7.0 [tss04] lower case too")
    assert not r.matches(451, "451 4.7.0 [TSS04] another code")


def test_defaults_and_round_trip() -> None:
    r = rule()
    assert (r.scope, r.count, r.window, r.codes, r.enabled) == (Scope.SITE, 1, 0.0, None, True)
    assert read_rules([r.to_dict()], "x") == [r]


def test_kumomta_spellings_read() -> None:
    r = rule(trigger="2/hr", duration="2 hours")
    assert (r.count, r.window, r.duration) == (2, 3600.0, 7200.0)
    assert rule(action="reduce", rate="1/minute").rate == Amount(1 / 60, fraction=False)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"regex": "("}, r"shaping\.rules\[0\] \(r\)\.regex: bad regular expression"),
        ({"regex": ""}, r"\(r\)\.regex: expected a regular expression"),
        ({"name": "has space"}, r"shaping\.rules\[0\]\.name: expected a name"),
        ({"action": "explode"}, r"\(r\)\.action: expected 'reduce' \| 'suspend' \| 'bounce'"),
        ({"scope": "planet"}, r"\(r\)\.scope"),
        ({"trigger": "often"}, r"\(r\)\.trigger: expected \"immediate\" or \"N/window\""),
        ({"trigger": "0/1h"}, r"\(r\)\.trigger"),
        ({"trigger": "3/fortnight"}, r"\(r\)\.trigger"),
        ({"action": "reduce"}, r"action reduce needs connections, rate or both"),
        ({"connections": 1}, r"connections and rate are for action reduce only"),
        ({"action": "reduce", "connections": 0}, r"\.connections: at least 1"),
        ({"action": "reduce", "connections": 1.5}, r"\.connections: a fraction must be"),
        ({"action": "reduce", "rate": "0/s"}, r"\.rate: a rate must be positive; got '0/s'"),
        ({"action": "reduce", "rate": 3}, r"\.rate: expected a rate"),
        ({"duration": "soon"}, r"\.duration: 'soon' is not a length of time"),
        ({"duration": 0}, r"\.duration: must be above 0"),
        ({"duration": None}, r"\.duration: expected a length of time"),
        ({"codes": [42]}, r"\.codes: expected reply codes"),
        ({"enabled": "no"}, r"\.enabled: expected true or false"),
        ({"colour": "red"}, r"shaping\.rules\[0\]\.colour: unknown key"),
    ],
)
def test_mistakes_name_the_key(table: dict[str, Any], message: str) -> None:
    with pytest.raises(RuleError, match=message):
        rule(**table)


def test_a_bounce_may_be_immediate_and_once() -> None:
    assert rule(action="bounce", duration=0).duration == 0.0


def test_names_must_be_unique_and_tables_a_list() -> None:
    with pytest.raises(RuleError, match=r"x\[1\]\.name: 'r' is used by an earlier rule"):
        read_rules([rule().to_dict(), rule().to_dict()], "x")
    with pytest.raises(RuleError, match=r"x: expected an array of tables"):
        read_rules({"name": "r"}, "x")
    with pytest.raises(RuleError, match=r"x\[0\]: expected a table"):
        read_rules(["r"], "x")


# Each shipped rule on the reply its citation gives (tests fail when a rule has none).
SHIPPED_SAMPLES = {
    "yahoo-tss04": (
        421,
        "4.7.0",
        "[TSS04] Messages from 192.0.2.1 temporarily deferred due to unexpected volume or "
        "user complaints - 4.16.55.1; see https://postmaster.yahooinc.com/error-codes",
    ),
    "yahoo-tss05": (421, "4.7.0", "[TSS05] Messages from 192.0.2.1 temporarily deferred"),
    "gmail-unusual-rate": (
        421,
        "4.7.28",
        "Our system has detected an unusual rate of mail originating from your SPF domain "
        "[example.com 12]. To protect our users from spam, mail sent from your domain has "
        "been temporarily rate limited. - gsmtp",
    ),
    "outlook-4.7.650": (
        451,
        "4.7.650",
        "The mail server [192.0.2.1] has been temporarily rate limited due to IP "
        "reputation. For e-mail delivery information, see https://postmaster.live.com (S775)",
    ),
    "outlook-connections": (
        421,
        "4.7.0",
        "The mail server [192.0.2.1] has exceeded the maximum number of connections. (S3115)",
    ),
    "apple-hcm1": (421, None, "[HCM1] Your mail from 192.0.2.1 was deferred."),
    "comcast-rl": (421, None, "192.0.2.1 Too many sessions opened - RL000001"),
    "orange-connections": (421, None, "mwinf5c10 ME Trop de connexions, OFR_999 [999]"),
    "ip-reputation": (
        421,
        "4.7.0",
        "Unfortunately, messages from [192.0.2.1] weren't sent. Please contact your "
        "Internet service provider",
    ),
}


def test_every_shipped_rule_has_a_sample_and_takes_it() -> None:
    shipped = load_shipped()
    assert sorted(r.name for r in shipped) == sorted(SHIPPED_SAMPLES)
    for name, (code, enhanced, text) in SHIPPED_SAMPLES.items():
        assert first(shipped, code, enhanced, text) == name, name


def test_shipped_rules_leave_ordinary_replies_alone() -> None:
    shipped = load_shipped()
    assert first(shipped, 451, "4.7.1", "rate limited, try again later") is None
    assert first(shipped, 421, "4.7.0", "Too many connections") is None
    assert first(shipped, 550, "5.1.1", "no such user") is None
    assert not [r for r in shipped if r.action is Action.BOUNCE]


def test_user_rules_come_first_and_replace_or_disable_shipped_ones() -> None:
    shipped = load_shipped()
    mine = read_rules(
        [
            {"name": "mine", "regex": "TSS04", "action": "suspend", "duration": "1h"},
            {
                "name": "gmail-unusual-rate",
                "regex": "x",
                "action": "suspend",
                "duration": "1h",
                "enabled": False,
            },
        ],
        "shaping.rules",
    )
    rules = combine(mine, shipped)
    assert rules[0].name == "mine"
    assert "gmail-unusual-rate" not in [r.name for r in rules]
    assert len(rules) == len(shipped)  # one added, one turned off
    assert first(rules, *SHIPPED_SAMPLES["yahoo-tss04"]) == "mine"
    assert first(rules, *SHIPPED_SAMPLES["gmail-unusual-rate"]) is None
    assert combine([]) == shipped
