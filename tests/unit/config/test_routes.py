"""[routes]: which relay a domain's mail goes through, every bad value as one line naming
the key, the password read at load and never shown, and the round trip through to_dict
(what workers receive and SIGHUP compares)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from engine.config import ConfigError, from_dict
from engine.config.routes import Relay, RelayTls, Routes, Secret
from engine.model import TlsPolicy

PASSWORD = "correct horse battery"


@pytest.fixture
def password_file(tmp_path: Path) -> Path:
    path = tmp_path / "relay.password"
    path.write_text(PASSWORD + "\n")
    return path


def routes(data: dict[str, Any]) -> Routes:
    return from_dict({"routes": data}).routes


def test_no_routes_means_mx_delivery_for_everything() -> None:
    assert routes({}) == Routes()
    assert Routes().relay_for("example.com") is None


def test_default_relay_with_auth_requires_tls_by_default(password_file: Path) -> None:
    got = routes(
        {
            "default": {
                "relay": "email-smtp.eu-west-1.amazonaws.com:587",
                "auth": {"user": "AKIAEXAMPLE", "password_file": str(password_file)},
            }
        }
    )
    relay = got.relay_for("anything.test")
    assert relay is not None
    assert (relay.host, relay.port, relay.literal) == (
        "email-smtp.eu-west-1.amazonaws.com",
        587,
        False,
    )
    assert relay.tls is RelayTls.REQUIRED and relay.tls.starttls is TlsPolicy.REQUIRED
    assert relay.auth is not None and relay.auth.user == "AKIAEXAMPLE"
    assert relay.auth.password.reveal() == PASSWORD  # the trailing newline is not part of it
    assert relay.table == "routes.default"


def test_without_auth_tls_is_opportunistic_by_default() -> None:
    relay = routes({"default": {"relay": "relay.example.net:25"}}).default
    assert relay is not None and relay.tls is RelayTls.OPPORTUNISTIC and relay.auth is None


def test_a_domain_route_beats_the_default_and_mx_opts_out() -> None:
    got = routes(
        {
            "default": {"relay": "[192.0.2.1]:25"},
            "Via-Other.Example.": {"relay": "other.example.net:2525", "tls": "disabled"},
            "direct.example": {"relay": "mx"},
        }
    )
    default, other = got.relay_for("x.example"), got.relay_for("via-other.example")
    assert default is not None and default.address == "[192.0.2.1]:25" and default.literal
    assert other is not None and (other.host, other.port) == ("other.example.net", 2525)
    assert other.tls is RelayTls.DISABLED and other.table == 'routes."Via-Other.Example."'
    assert got.relay_for("direct.example") is None


def test_a_domain_route_inherits_nothing_from_the_default(password_file: Path) -> None:
    """The default relay's password must never go to a domain's other relay."""
    auth = {"user": "u", "password_file": str(password_file)}
    got = routes(
        {
            "default": {"relay": "a.example:587", "auth": auth},
            "d.example": {"relay": "b.example:25"},
        }
    )
    relay = got.relay_for("d.example")
    assert relay is not None and relay.auth is None and relay.tls is RelayTls.OPPORTUNISTIC


@pytest.mark.parametrize(
    ("relay", "host", "port", "literal"),
    [
        ("[192.0.2.7]:465", "192.0.2.7", 465, True),
        ("192.0.2.7:25", "192.0.2.7", 25, True),
        ("[2001:DB8::1]:587", "2001:db8::1", 587, True),
        ("Smtp.Example.COM.:587", "smtp.example.com", 587, False),
        ("[127.0.0.1]:10025", "127.0.0.1", 10025, True),
    ],
)
def test_relay_forms(relay: str, host: str, port: int, literal: bool) -> None:
    got = routes({"default": {"relay": relay}}).default
    assert got is not None and (got.host, got.port, got.literal) == (host, port, literal)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"relay": "smtp.example.com"}, 'routes.default.relay: expected "host:port"'),
        ({"relay": "2001:db8::1:25"}, 'routes.default.relay: expected "host:port"'),
        ({"relay": "[smtp.example.com]:25"}, "in brackets is not an IP address"),
        ({"relay": "smtp.example.com:0"}, "routes.default.relay: the port must be 1..65535"),
        ({"relay": "smtp.example.com:99999"}, "the port must be 1..65535"),
        ({"relay": "smtp.example.com:²5"}, "the port must be 1..65535"),
        ({"relay": "localhost:25"}, "routes.default.relay: write the address, e.g. [127.0.0.1]:25"),
        ({"relay": "bad_host!:25"}, "is not a host name"),
        ({"relay": 25}, "routes.default.relay: expected"),
        ({}, "routes.default.relay: expected"),
        ({"relay": "a.example:25", "tls": "verified"}, "routes.default.tls: expected one of"),
        ({"relay": "a.example:25", "port": 25}, "unknown configuration key: routes.default.port"),
        ({"relay": "mx", "tls": "required"}, 'routes.default.tls: not with relay = "mx"'),
        ({"relay": "a.example:25", "auth": "user:pw"}, "routes.default.auth: expected"),
        ({"relay": "a.example:25", "auth": {"password_file": "/x"}}, "routes.default.auth.user"),
        ({"relay": "a.example:25", "auth": {"user": "u"}}, "routes.default.auth.password_file"),
        (
            {"relay": "a.example:25", "auth": {"user": "u", "password_file": "/x", "pw": "p"}},
            "unknown configuration key: routes.default.auth.pw",
        ),
    ],
)
def test_bad_values_name_the_key(table: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as e:
        routes({"default": table})
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_a_domain_table_must_name_a_domain() -> None:
    with pytest.raises(ConfigError, match=r'^routes\."localhost": expected a domain name'):
        routes({"localhost": {"relay": "mx"}})


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read"),
        (b"", "is empty"),
        (b"\n", "is empty"),
        (b"line one\nline two\n", "must hold the password on one line"),
        (b"\xff\xfe", "is not UTF-8 text"),
    ],
)
def test_password_file_problems_are_one_line_naming_the_key(
    tmp_path: Path, content: bytes | None, message: str
) -> None:
    path = tmp_path / "pw"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ConfigError) as e:
        routes(
            {
                "default": {
                    "relay": "a.example:587",
                    "auth": {"user": "u", "password_file": str(path)},
                }
            }
        )
    text = str(e.value)
    assert text.startswith("routes.default.auth.password_file: ") and message in text
    assert "line one" not in text and "\n" not in text


def test_unreadable_password_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read .*: Is a directory"):
        routes(
            {
                "default": {
                    "relay": "a.example:587",
                    "auth": {"user": "u", "password_file": str(tmp_path)},
                }
            }
        )


def test_crlf_line_ending_is_not_part_of_the_password(tmp_path: Path) -> None:
    path = tmp_path / "pw"
    path.write_bytes(b"s3cret\r\n")
    relay = routes(
        {"default": {"relay": "a.example:587", "auth": {"user": "u", "password_file": str(path)}}}
    ).default
    assert relay is not None and relay.auth is not None
    assert relay.auth.password.reveal() == "s3cret"


def test_the_password_never_shows(password_file: Path) -> None:
    settings = from_dict(
        {
            "routes": {
                "default": {
                    "relay": "a.example:587",
                    "auth": {"user": "u", "password_file": str(password_file)},
                }
            }
        }
    )
    dumped = settings.to_dict()
    assert dumped["routes"] == {
        "default": {
            "relay": "a.example:587",
            "tls": "required",
            "auth": {"user": "u", "password_file": str(password_file)},
        }
    }
    for text in (repr(settings), str(settings.routes), repr(dumped), str(Secret(PASSWORD))):
        assert PASSWORD not in text
    assert from_dict(dumped) == settings  # workers rebuild the same settings (file re-read)


def test_round_trip_of_every_form(password_file: Path) -> None:
    data = {
        "default": {"relay": "[2001:db8::1]:465", "tls": "implicit"},
        "a.example": {"relay": "mx"},
        "b.example": {
            "relay": "10.0.0.1:25",
            "tls": "disabled",
            "auth": {"user": "u", "password_file": str(password_file)},
        },
    }
    settings = from_dict({"routes": data})
    assert from_dict(settings.to_dict()) == settings
    relay = settings.routes.default
    assert isinstance(relay, Relay) and relay.tls.starttls is TlsPolicy.DISABLED


@pytest.mark.parametrize(
    ("listen", "relay"),
    [
        ("127.0.0.1:2525", "[127.0.0.1]:2525"),
        ("localhost:2525", "127.0.0.1:2525"),
        ("0.0.0.0:2525", "[127.0.0.5]:2525"),
        ("[::]:2525", "[::1]:2525"),
    ],
)
def test_a_relay_that_is_our_own_listener_is_refused(listen: str, relay: str) -> None:
    with pytest.raises(ConfigError, match=r"^routes\.default\.relay: .* own listener"):
        from_dict({"smtpd": {"listen": [listen]}, "routes": {"default": {"relay": relay}}})


def test_a_relay_on_another_port_of_our_host_is_fine() -> None:
    settings = from_dict(
        {
            "smtpd": {"listen": ["127.0.0.1:2525"]},
            "routes": {"default": {"relay": "[127.0.0.1]:10025"}},
        }
    )
    assert settings.routes.default is not None


@pytest.mark.parametrize(
    ("tls", "starttls"),
    [
        ("required", TlsPolicy.REQUIRED),
        ("verify", TlsPolicy.VERIFY),
        ("implicit", TlsPolicy.DISABLED),  # TLS from connect: no STARTTLS inside it
        ("opportunistic", TlsPolicy.OPPORTUNISTIC),
        ("disabled", TlsPolicy.DISABLED),
    ],
)
def test_each_tls_mode_and_its_starttls_policy(tls: str, starttls: TlsPolicy) -> None:
    relay = routes({"default": {"relay": "a.example:25", "tls": tls}}).default
    assert relay is not None and relay.tls.value == tls and relay.tls.starttls is starttls
