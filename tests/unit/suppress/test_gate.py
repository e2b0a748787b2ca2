"""engine.suppress.gate: the sender domain, and when a List-Unsubscribe is (not) added."""

from __future__ import annotations

from engine.config import UnsubscribeSettings
from engine.suppress.gate import HEADER_RESULTS, IntakeGate
from engine.unsubscribe.token import Keyring

U = UnsubscribeSettings(url_base="https://u.example.com")
RING = Keyring((b"k" * 64,))
MSG = b"From: News <n@news.example.com>\r\nTo: a@x.test\r\n\r\nhi\r\n"


def test_sender_domain_is_the_from_domain_else_the_envelope_senders() -> None:
    gate = IntakeGate(None, U, RING)
    s = gate.screen(MSG, "bounces@bounces.example.net", ["a@x.test"], 0.0)
    assert s.sender_domain == "news.example.com" and s.keep == ["a@x.test"] and s.hits == []
    s = gate.screen(b"To: a@x.test\r\n\r\nhi\r\n", "b@Bounces.Example.net", ["a@x.test"], 0.0)
    assert s.sender_domain == "bounces.example.net"
    assert gate.screen(b"To: a@x.test\r\n\r\n", "", ["a@x.test"], 0.0).sender_domain is None


def test_stamp_results() -> None:
    gate = IntakeGate(None, U, RING)
    s = gate.screen(MSG, "", ["a@x.test", "b@x.test"], 0.0)
    out, result = gate.stamp(MSG, ["a@x.test"], s)
    assert result == "added" and b"List-Unsubscribe: <https://u.example.com/u/" in out
    assert gate.stamp(MSG, ["a@x.test", "b@x.test"], s) == (MSG, "several_recipients")
    own = b"List-Unsubscribe: <mailto:x@y.test>\r\n" + MSG
    assert gate.stamp(own, ["a@x.test"], gate.screen(own, "", ["a@x.test"], 0.0)) == (
        own,
        "present",
    )
    anon = b"To: a@x.test\r\n\r\n"
    screened = gate.screen(anon, "", ["a@x.test"], 0.0)
    assert gate.stamp(anon, ["a@x.test"], screened)[1] == "unusable"
    off = IntakeGate(None)
    assert off.stamp(MSG, ["a@x.test"], s) == (MSG, "")
    assert {"added", "present", "several_recipients", "unusable"} == set(HEADER_RESULTS)


def test_metric_labels_agree_with_the_results() -> None:
    from engine.telemetry.catalog import UNSUBSCRIBE_HEADERS

    assert UNSUBSCRIBE_HEADERS == HEADER_RESULTS
