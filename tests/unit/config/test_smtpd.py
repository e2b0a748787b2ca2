"""[smtpd] settings: defaults, validation naming the key, round trip through to_dict."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.config import ConfigError, SmtpdSettings, from_dict


def test_defaults_listen_on_loopback_and_relay_for_loopback_only() -> None:
    s = from_dict({}).smtpd
    assert s == SmtpdSettings()
    assert s.listen == ("127.0.0.1:2525",)
    assert s.relay_networks == ("127.0.0.0/8", "::1/128")
    assert s.max_message_size == 52_428_800 and s.max_recipients == 1000


def test_values_are_read_and_round_trip() -> None:
    data = {
        "smtpd": {
            "listen": ["127.0.0.1:0", "[::1]:2526"],
            "relay_networks": [],
            "users_file": "/etc/volley/users",
            "tls_cert": "/c.pem",
            "tls_key": "/k.pem",
            "implicit_tls_listen": ["127.0.0.1:4650"],
            "max_message_size": 1000,
            "max_recipients": 5,
            "bounce_domains": ["Bounces.Example.COM."],
            "max_connections_per_client": 5,
            "idle_timeout": "90s",
            "max_errors": 7,
            "max_unknown_commands": 3,
            "max_auth_failures": 4,
            "auth_failure_window": "1h",
            "received_auth_user": True,
        }
    }
    s = from_dict(data)
    assert s.smtpd.users_file == Path("/etc/volley/users")
    assert s.smtpd.bounce_domains == ("bounces.example.com",)
    assert s.smtpd.relay_networks == ()
    assert (s.smtpd.max_connections_per_client, s.smtpd.idle_timeout) == (5, 90.0)
    assert (s.smtpd.max_errors, s.smtpd.max_unknown_commands) == (7, 3)
    assert (s.smtpd.max_auth_failures, s.smtpd.auth_failure_window) == (4, 3600.0)
    assert s.smtpd.received_auth_user is True
    assert from_dict(s.to_dict()) == s


def test_abuse_limits_default_to_postfix_and_rfc_values() -> None:
    s = SmtpdSettings()
    assert s.max_connections_per_client == 50 and s.max_errors == 20
    assert s.idle_timeout == 300.0  # RFC 5321 §4.5.3.2.7
    assert s.received_auth_user is False


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ({"listen": ["mail.example:25"]}, "smtpd.listen"),
        ({"listen": "127.0.0.1:25"}, "smtpd.listen"),
        ({"relay_networks": ["10.0.0.300/8"]}, "smtpd.relay_networks"),
        ({"tls_cert": "/c.pem"}, "smtpd.tls_cert"),
        ({"implicit_tls_listen": ["127.0.0.1:465"]}, "smtpd.implicit_tls_listen"),
        ({"max_recipients": 0}, "smtpd.max_recipients"),
        ({"bounce_domains": [""]}, "smtpd.bounce_domains"),
        ({"nonsense": 1}, "smtpd.nonsense"),
        ({"max_connections_per_client": 0}, "smtpd.max_connections_per_client"),
        ({"idle_timeout": "0s"}, "smtpd.idle_timeout"),
        ({"idle_timeout": "soon"}, "smtpd.idle_timeout"),
        ({"max_errors": 0}, "smtpd.max_errors"),
        ({"max_unknown_commands": -1}, "smtpd.max_unknown_commands"),
        ({"max_auth_failures": 0}, "smtpd.max_auth_failures"),
        ({"auth_failure_window": "x"}, "smtpd.auth_failure_window"),
        ({"received_auth_user": "yes"}, "smtpd.received_auth_user"),
        ({"listen": ["127.0.0.1:25", "127.0.0.1:25"]}, "smtpd.listen"),
        (
            {
                "listen": ["127.0.0.1:465"],
                "implicit_tls_listen": ["127.0.0.1:465"],
                "tls_cert": "/c",
                "tls_key": "/k",
            },
            "smtpd.implicit_tls_listen",
        ),
    ],
)
def test_a_bad_value_names_its_key(section: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        from_dict({"smtpd": section})
