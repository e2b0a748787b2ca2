"""Tests for tests.support.throttling: the decisions with a fake clock, then both
receivers over loopback with stdlib smtplib."""

from __future__ import annotations

import smtplib

import pytest

from tests.support.receiver_probe import IP, MSG
from tests.support.throttling import (
    LOAD_REPLY,
    RATE_REPLY,
    LoadShedder,
    LoadSheddingServer,
    RateGate,
    SlidingCount,
    ThrottlingServer,
    tempfail_share,
)

T0 = 5000.0


def test_sliding_count_forgets_after_its_span() -> None:
    c = SlidingCount(1.0)
    for t in (0.0, 0.4, 0.9):
        c.add(T0 + t)
    assert c.count(T0 + 0.99) == 3
    assert c.count(T0 + 1.0) == 2  # the first is a full second old
    assert c.count(T0 + 2.0) == 0


def test_rate_gate_admits_at_most_max_rate_in_any_second() -> None:
    gate = RateGate(5)
    # 10 a second for 3 seconds, evenly spread: 5 of each second's 10 get through.
    admitted = [T0 + i / 10 for i in range(30) if gate.admit(T0 + i / 10)]
    assert len(admitted) == 15
    for t in admitted:  # no sliding one-second window holds more than 5
        assert sum(1 for u in admitted if t <= u < t + 1) <= 5
    with pytest.raises(ValueError):
        RateGate(0)


def test_tempfail_share_rises_with_load() -> None:
    assert tempfail_share(50, 100) == 0.0
    assert tempfail_share(100, 100) == 0.0
    assert tempfail_share(150, 100) == pytest.approx(0.25)
    assert tempfail_share(200, 100) == pytest.approx(0.5)
    assert tempfail_share(300, 100) == pytest.approx(0.9)  # 1.0 on the slope, capped


def test_load_shedder_refuses_exactly_its_share() -> None:
    shed = LoadShedder(knee=10)
    # 10 a second: below the knee, nothing refused.
    assert not any(shed.refuse(T0 + i / 10) for i in range(50))
    # 20 a second (twice the knee): once the second is full, half are refused.
    later = T0 + 100
    refused = [shed.refuse(later + i / 20) for i in range(200)]
    assert sum(refused[20:]) == 90  # 180 RCPTs at a steady 50 %
    assert sum(refused[:20]) < 10  # while the load was still building up
    with pytest.raises(ValueError):
        LoadShedder(knee=0)


def _send(port: int, n: int) -> list[int]:
    """n one-recipient messages on one connection; each RCPT's reply code."""
    codes = []
    with smtplib.SMTP(IP, port, local_hostname="client.test", timeout=10) as c:
        c.ehlo()
        for i in range(n):
            c.mail("a@src.test")
            code, _ = c.rcpt(f"u{i}@dst.test")
            codes.append(code)
            if code == 250:
                c.data(MSG)
            else:
                c.rset()
    return codes


def test_throttling_server_limits_rate_at_rcpt_and_connections_at_connect(port: int) -> None:
    with ThrottlingServer(IP, port, max_connections=1, max_rate=3) as rx:
        held = smtplib.SMTP(IP, port, local_hostname="client.test", timeout=10)
        try:
            with pytest.raises(smtplib.SMTPConnectError) as info:
                smtplib.SMTP(IP, port, timeout=10)
            assert info.value.smtp_code == 421
        finally:
            held.quit()
        # A burst on one connection: 3 go through within the second, the rest get 451.
        codes = _send(port, 20)
        assert codes.count(250) >= 3 and codes.count(451) >= 1
        assert max(rx.accepted_per_second.values()) <= 3
        assert sum(rx.accepted_per_second.values()) == codes.count(250) == len(rx.messages)
        assert rx.throttling_replies == 1 + codes.count(451)
    assert RATE_REPLY.startswith("451 4.7.1")


def test_load_shedding_server_tempfails_under_load(port: int) -> None:
    with LoadSheddingServer(IP, port, knee=2) as rx:
        codes = _send(port, 30)
        assert codes[:2] == [250, 250]  # at the knee: none refused
        assert 451 in codes
        assert rx.throttling_replies == codes.count(451) == rx.stats.refused_rcpts
        assert sum(rx.accepted_per_second.values()) == codes.count(250)
    assert LOAD_REPLY.startswith("451 4.7.1")
