"""Which replies are throttling: the shipped [throttling] data, on real provider texts."""

from __future__ import annotations

import pytest

from engine.shaping.replies import (
    ReplySample,
    Stage,
    Throttling,
    read_throttling,
    reply_line,
    shipped_throttling,
)

T = Stage.TRANSACTION

THROTTLING = [
    # https://support.google.com/a/answer/3726730
    (421, "4.7.0", "Try again later, closing connection. (EHLO) gsmtp", Stage.SESSION),
    (
        421,
        "4.7.28",
        "Our system has detected an unusual rate of mail originating from your SPF domain",
        T,
    ),
    # https://sendersupport.olc.protection.outlook.com/pm/troubleshooting.aspx
    (
        451,
        "4.7.650",
        "The mail server [192.0.2.1] has been temporarily rate limited due to IP reputation.",
        T,
    ),
    # https://senders.yahooinc.com/smtp-error-codes/
    (
        421,
        "4.7.0",
        "[TSS04] Messages from 192.0.2.1 temporarily deferred due to unexpected volume",
        Stage.CONNECT,
    ),
    (
        421,
        None,
        "Too many concurrent SMTP connections from this IP address; please try again later",
        Stage.CONNECT,
    ),
    (451, None, "Rate limit exceeded, try again later", T),
    (452, None, "Too many messages, slow down", T),
    (451, "4.7.1", "rate limited, try again later", T),
    (450, "4.7.1", "Client host rejected: too many connections", T),  # 4.7.x, any 4xx
]

NOT_THROTTLING = [
    (550, "5.7.1", "Rate limit exceeded permanently", T),  # a 5xx is a verdict, not a pace
    (451, "4.7.1", "Greylisted, please try again later", T),  # RFC 6647: not load
    (450, "4.7.1", "<bob@x.test>: Recipient address rejected: Greylisted", T),
    (452, "4.2.2", "Mailbox full, quota exceeded", T),
    (452, "4.5.3", "Too many recipients", T),
    (451, "4.3.0", "Temporary local problem", T),  # 451 without throttling words
    (450, "4.2.0", "mailbox busy (test)", T),  # tests/support TEMPFAIL_REPLY
    (451, "4.4.1", "separate queue problem", T),  # "rate" inside a word is no rate
]


@pytest.mark.parametrize(("code", "enhanced", "text", "stage"), THROTTLING)
def test_throttling(code: int, enhanced: str | None, text: str, stage: Stage) -> None:
    assert shipped_throttling().is_throttling(ReplySample(code, enhanced, text, stage))


@pytest.mark.parametrize(("code", "enhanced", "text", "stage"), NOT_THROTTLING)
def test_not_throttling(code: int, enhanced: str | None, text: str, stage: Stage) -> None:
    assert not shipped_throttling().is_throttling(ReplySample(code, enhanced, text, stage))


def test_reply_line_is_what_rules_see() -> None:
    assert reply_line(ReplySample(421, "4.7.0", "[TSS04] x", T)) == "421 4.7.0 [TSS04] x"
    assert reply_line(ReplySample(421, None, "busy", T)) == "421 busy"
    assert len(reply_line(ReplySample(451, None, "x" * 100_000, T))) == 2048


def test_read_throttling_checks_its_table() -> None:
    t = read_throttling({"codes": [421], "word_codes": [451], "words": "slow"})
    assert t == Throttling(codes=frozenset({421}), word_codes=frozenset({451}))
    assert t.is_throttling(ReplySample(451, None, "slow down", T))
    for bad, key in [
        ({"codes": [550]}, "throttling.codes"),
        ({"words": "("}, "throttling.words"),
        ({"enhanced": [4]}, "throttling.enhanced"),
        ({"bogus": 1}, "throttling.bogus"),
    ]:
        with pytest.raises(ValueError, match=key.replace(".", r"\.")):
            read_throttling(bad)
