"""The relay decision: trusted networks, authenticated clients, bounce domains."""

from __future__ import annotations

import ipaddress

import pytest

from engine.smtpd.relay import Verdict, decide, is_loopback, must_authenticate, trusted

NETS = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("2001:db8::/32"))
BOUNCES = frozenset({"bounces.example.com"})


@pytest.mark.parametrize(
    ("ip", "expected"),
    [
        ("127.0.0.1", True),
        ("127.9.9.9", True),
        ("::ffff:127.0.0.1", True),  # a dual-stack socket's view of an IPv4 client
        ("2001:db8::5", True),
        ("192.0.2.1", False),
        ("::1", False),
        ("fe80::1%eth0", False),
        ("not an ip", False),
    ],
)
def test_trusted_means_inside_relay_networks(ip: str, expected: bool) -> None:
    assert trusted(ip, NETS) is expected


def test_no_network_trusts_nobody() -> None:
    assert not trusted("127.0.0.1", ())


@pytest.mark.parametrize(
    ("ip", "expected"), [("127.0.0.2", True), ("::1", True), ("10.0.0.1", False)]
)
def test_loopback(ip: str, expected: bool) -> None:
    assert is_loopback(ip) is expected


@pytest.mark.parametrize(
    ("domain", "is_trusted", "authenticated", "verdict"),
    [
        ("dest.test", True, False, Verdict.RELAY),
        ("dest.test", False, True, Verdict.RELAY),
        ("dest.test", False, False, Verdict.DENIED),
        ("bounces.example.com", False, False, Verdict.LOCAL),
        ("bounces.example.com", True, True, Verdict.LOCAL),  # never relayed, whoever sends
        ("sub.bounces.example.com", False, False, Verdict.DENIED),
    ],
)
def test_decide(domain: str, is_trusted: bool, authenticated: bool, verdict: Verdict) -> None:
    got = decide(domain, trusted=is_trusted, authenticated=authenticated, bounce_domains=BOUNCES)
    assert got is verdict


def test_mail_is_refused_at_once_only_when_nothing_could_be_accepted() -> None:
    assert must_authenticate(trusted=False, authenticated=False, bounce_domains=frozenset())
    assert not must_authenticate(trusted=False, authenticated=False, bounce_domains=BOUNCES)
    assert not must_authenticate(trusted=True, authenticated=False, bounce_domains=frozenset())
    assert not must_authenticate(trusted=False, authenticated=True, bounce_domains=frozenset())
