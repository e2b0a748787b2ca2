"""engine.shaping.limits: the stricter of a destination's policy and its provider's."""

from __future__ import annotations

from engine.config.policy import DomainPolicy
from engine.model import TlsPolicy
from engine.shaping.gcra import parse_rate
from engine.shaping.limits import site_for, site_limits, stricter_tls
from engine.shaping.providers import Provider, shipped_providers


def test_each_value_is_the_stricter_one() -> None:
    p = Provider(
        "p",
        (".p.test",),
        max_connections=20,
        max_messages_per_connection=50,
        max_message_rate=parse_rate("10/s"),
        provider_max_connections=5,
        tls=TlsPolicy.REQUIRED,
    )
    policy = DomainPolicy(max_connections=10, max_message_rate=parse_rate("100/min"))
    got = site_limits(policy, p)
    assert got.max_connections == 10
    assert got.max_messages_per_connection == 50
    assert got.message_rate == parse_rate("100/min")
    assert got.provider_connections == 5
    assert got.tls is TlsPolicy.REQUIRED
    plain = site_limits(policy, None)
    assert plain.provider_connections is None and plain.tls is TlsPolicy.OPPORTUNISTIC


def test_tls_order() -> None:
    assert stricter_tls(TlsPolicy.DISABLED, TlsPolicy.REQUIRED) is TlsPolicy.REQUIRED
    assert stricter_tls(TlsPolicy.REQUIRED, TlsPolicy.OPPORTUNISTIC) is TlsPolicy.REQUIRED
    assert stricter_tls(TlsPolicy.OPPORTUNISTIC, None) is TlsPolicy.OPPORTUNISTIC


def test_site_for_rolls_up_unless_told_not_to() -> None:
    providers = shipped_providers().values()
    hosts = ["aspmx.l.google.com", "alt1.aspmx.l.google.com"]
    rolled = site_for("workspace.example", hosts, DomainPolicy(), providers)
    assert rolled.name == "(alt1)?.aspmx.l.google.com" and rolled.provider == "google"
    alone = site_for("workspace.example", hosts, DomainPolicy(mx_rollup=False), providers)
    assert alone.name == "domain:workspace.example" and alone.provider == "google"


def test_verify_is_the_strictest() -> None:
    assert stricter_tls(TlsPolicy.VERIFY, TlsPolicy.REQUIRED) is TlsPolicy.VERIFY
    assert stricter_tls(TlsPolicy.REQUIRED, TlsPolicy.VERIFY) is TlsPolicy.VERIFY
