"""Reply lines are well-formed; refusal reasons are the metric's label values."""

from __future__ import annotations

import re

from engine.smtpd import replies
from engine.smtpd.replies import Refusal, greeting, hostname_line
from engine.telemetry.catalog import SMTPD_REFUSALS

_LINE = re.compile(rb"[2345]\d\d( [2345]\.\d{1,3}\.\d{1,3} [ -~]+| [ -~]*)\r\n")


def test_every_fixed_reply_is_one_line_with_an_enhanced_code_where_due() -> None:
    for name in dir(replies):
        value = getattr(replies, name)
        if isinstance(value, bytes):
            assert _LINE.fullmatch(value), name
            if not value.startswith((b"334", b"220 2", b"235")) and value[:1] in b"45":
                assert re.match(rb"\d{3} [45]\.\d", value), name


def test_greeting_and_host_lines() -> None:
    assert greeting("mx.test") == b"220 mx.test ESMTP Volley\r\n"
    assert hostname_line("421", "mx.test", "4.4.2 bye") == b"421 mx.test 4.4.2 bye\r\n"


def test_refusals_are_the_metric_labels() -> None:
    assert tuple(r.value for r in Refusal) == SMTPD_REFUSALS
