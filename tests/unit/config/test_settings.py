from pathlib import Path

import pytest

from engine.config import (
    ConfigError,
    DomainPolicy,
    Settings,
    from_dict,
    helo_name_warning,
    load_settings,
    parse_address,
    parse_duration,
)
from engine.model import TlsPolicy
from tests.support.tls_certs import LocalCA


def test_defaults_without_a_file() -> None:
    s = load_settings(None)
    assert s.spool_path == Path("var/spool")
    assert s.metrics_listen == "127.0.0.1:9108"
    assert s.smtp_port == 25
    assert s.workers >= 1
    p = s.policy("anything.test")
    assert (p.max_connections, p.max_messages_per_connection, p.max_recipients_per_transaction) == (
        10,
        100,
        100,
    )
    assert p.max_age == 5 * 86400 and p.tls is TlsPolicy.OPPORTUNISTIC


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        (30, 30.0),
        (1.5, 1.5),
        ("250ms", 0.25),
        ("30s", 30.0),
        ("10m", 600.0),
        ("2h", 7200.0),
        ("5d", 432000.0),
    ],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text, "k") == seconds


@pytest.mark.parametrize("bad", ["soon", "-1s", True, [], -3])
def test_bad_durations_name_the_key(bad: object) -> None:
    with pytest.raises(ConfigError, match=r"domains\.default\.max_age"):
        from_dict({"domains": {"default": {"max_age": bad}}})


def test_file_and_overrides(tmp_path: Path) -> None:
    cfg = tmp_path / "v.toml"
    cfg.write_text(
        """
workers = 3
[spool]
path = "/srv/spool"
[dns]
nameservers = ["127.0.0.1:5353"]
[smtp]
port = 2525
helo_name = "mta.example.test"
[smtp.timeouts]
rcpt = "20s"
[domains.default]
max_connections = 4
retry_schedule = ["1s", "2s"]
[domains."Big.Example.TEST"]
max_connections = 20
tls = "required"
"""
    )
    s = load_settings(cfg, {"smtp.port": 2626})
    assert s.workers == 3 and s.smtp_port == 2626 and s.helo_name == "mta.example.test"
    assert s.dns_nameservers == ("127.0.0.1:5353",)
    assert s.smtp_timeouts.rcpt == 20.0 and s.smtp_timeouts.mail == 300.0
    assert s.policy("other.test").max_connections == 4
    big = s.policy("big.example.test")
    # A domain table inherits the default table and overrides what it names.
    assert big == DomainPolicy(
        max_connections=20, retry_schedule=(1.0, 2.0), tls=TlsPolicy.REQUIRED
    )


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"wrokers": 2}, "wrokers"),
        ({"smtp": {"prot": 25}}, "smtp.prot"),
        ({"smtp": {"timeouts": {"rpct": 1}}}, "smtp.timeouts.rpct"),
        ({"domains": {"default": {"max_conections": 1}}}, "domains.default.max_conections"),
        ({"domains": {"x.test": {"tls": "maybe"}}}, "domains.x.test.tls"),
        ({"workers": 0}, "workers"),
        ({"smtp": {"port": 70000}}, "smtp.port"),
        ({"dns": {"nameservers": "127.0.0.1"}}, "dns.nameservers"),
    ],
)
def test_errors_name_the_key(data: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        from_dict(data)


def test_round_trip_through_dict_sent_to_workers() -> None:
    s = from_dict(
        {
            "workers": 2,
            "dns": {"nameservers": ["127.0.0.1:53"]},
            "smtp": {"source_address": "127.0.0.1"},
            "domains": {"default": {"max_age": "2s"}, "a.test": {"max_connections": 1}},
        }
    )
    assert from_dict(s.to_dict()) == s
    assert from_dict(Settings().to_dict()).policy("x") == Settings().policy("x")


def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("workers = ")
    with pytest.raises(ConfigError, match=r"bad\.toml"):
        load_settings(bad)


@pytest.mark.parametrize(
    "name", ["mail_out.example.com", "mx..example.com", "-mx.example.com", "mx example", "[1.2.3]"]
)
def test_a_bad_helo_name_is_a_config_error_naming_the_key(name: str) -> None:
    """Finding 8 of issue #14: refused at start, not at every connection's EHLO."""
    with pytest.raises(ConfigError, match=r"^smtp\.helo_name: .* (host name|address literal)"):
        from_dict({"smtp": {"helo_name": name}})


@pytest.mark.parametrize(
    "name",
    ["mta.example.com", "localhost", "MX-1.Example.COM", "[192.0.2.1]", "[IPv6:2001:db8::1]"],
)
def test_good_helo_names(name: str) -> None:
    assert from_dict({"smtp": {"helo_name": name}}).helo_name == name


def test_admin_settings() -> None:
    s = load_settings(None, {"spool.path": "/srv/spool"})
    assert s.admin_listen == "127.0.0.1:9109"  # loopback by default
    assert s.admin_token_path == Path("/srv/spool/admin.token")
    s = from_dict({"admin": {"listen": "[::1]:7000", "token_file": "/etc/volley/token"}})
    assert s.admin_listen == "[::1]:7000" and s.admin_token_path == Path("/etc/volley/token")
    assert from_dict(s.to_dict()) == s  # the workers get the same settings
    assert from_dict({"admin": {"listen": ""}}).admin_listen == ""  # the API off
    assert from_dict({"admin": {"listen": "localhost:9"}}).admin_listen == "localhost:9"


@pytest.mark.parametrize(
    ("listen", "problem"),
    [
        ("127.0.0.1", "expected ip:port"),
        ("127.0.0.1:0", "the port must be 1..65535"),
        ("127.0.0.1:70000", "the port must be 1..65535"),
        ("example.com:9109", "not an IP address"),
        ("::1:9109", "in brackets"),
        (9109, "expected"),
    ],
)
def test_bad_admin_listen_names_the_key(listen: object, problem: str) -> None:
    with pytest.raises(ConfigError, match=rf"^admin\.listen: .*{problem}"):
        from_dict({"admin": {"listen": listen}})


def test_unknown_admin_key() -> None:
    with pytest.raises(ConfigError, match=r"unknown configuration key: admin\.token"):
        from_dict({"admin": {"token": "x"}})


# -- parse_address (dns.nameservers, metrics.listen, admin.listen) --------------------------


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("127.0.0.1", ("127.0.0.1", 53)),
        ("127.0.0.1:5353", ("127.0.0.1", 5353)),
        (" 10.0.0.1:53 ", ("10.0.0.1", 53)),
        ("::1", ("::1", 53)),
        ("[::1]", ("::1", 53)),
        ("[::1]:5353", ("::1", 5353)),
        ("2001:db8::1", ("2001:db8::1", 53)),
    ],
)
def test_parse_address_as_a_nameserver(entry: str, expected: tuple[str, int]) -> None:
    assert parse_address(entry, default_port=53) == expected


@pytest.mark.parametrize(
    "entry",
    [
        "",
        "dns.example",
        "127.0.0.1:",
        "[::1]:",
        "127.0.0.1:0",
        "127.0.0.1:65536",
        "127.0.0.1:x",
        "[::1",
        "[::1]x",
        "1.2.3.4.5",
    ],
)
def test_parse_address_rejects(entry: str) -> None:
    with pytest.raises(ValueError):
        parse_address(entry, default_port=53)


@pytest.mark.parametrize(
    ("key", "value", "problem"),
    [
        ("dns.nameservers", ["not-an-ip"], "'not-an-ip' is not an IP address"),
        ("dns.nameservers", ["127.0.0.1:99999"], "the port must be 1..65535"),
        ("metrics.listen", "127.0.0.1:99999999", "the port must be 1..65535"),
        ("metrics.listen", "127.0.0.1", "expected ip:port"),
        ("metrics.listen", "localhost:9108x", "the port must be"),
        ("metrics.listen", "", "is not an IP address"),
    ],
)
def test_address_settings_are_checked_before_anything_starts(
    key: str, value: object, problem: str
) -> None:
    """Issue #9: `--dns not-an-ip` crash-looped the workers and an invalid metrics.listen
    ended in a raw OverflowError; now each is one ConfigError naming the key."""
    table, name = key.split(".")
    with pytest.raises(ConfigError, match=rf"^{key}: .*{problem}"):
        from_dict({table: {name: value}})


@pytest.mark.parametrize(
    ("name", "warned"),
    [("mta.example.com", False), ("localhost", True), ("localhost.localdomain", True),
     ("mybox", True), ("[192.0.2.1]", False)],
)  # fmt: skip
def test_helo_name_warning(name: str, warned: bool) -> None:
    assert (helo_name_warning(name) is not None) is warned


def test_target_host_filter_and_mx_limits_default_to_postfix_and_exim_values() -> None:
    s = from_dict({})
    assert "127.0.0.0/8" in s.ignore_target_hosts and "::1/128" in s.ignore_target_hosts
    assert (s.mx_address_limit, s.mx_session_limit) == (5, 2)
    t = from_dict({"smtp": {"ignore_target_hosts": [], "max_connection_lifetime": "1m"}})
    assert t.ignore_target_hosts == () and t.max_connection_lifetime == 60.0
    assert from_dict(t.to_dict()) == t


@pytest.mark.parametrize(
    ("smtp", "key"),
    [
        ({"ignore_target_hosts": ["localhost"]}, "smtp.ignore_target_hosts"),
        ({"mx_address_limit": 0}, "smtp.mx_address_limit"),
        ({"mx_session_limit": 0}, "smtp.mx_session_limit"),
        ({"max_connection_lifetime": 0}, "smtp.max_connection_lifetime"),
        ({"pipeline_depth": 0}, "smtp.pipeline_depth"),
        ({"pipeline_depth": "2"}, "smtp.pipeline_depth"),
    ],
)
def test_bad_smtp_limits_name_their_key(smtp: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        from_dict({"smtp": smtp})


def test_pipeline_depth_defaults_to_two_and_round_trips() -> None:
    assert from_dict({}).pipeline_depth == 2
    s = from_dict({"smtp": {"pipeline_depth": 1}})
    assert s.pipeline_depth == 1 and from_dict(s.to_dict()) == s


# -- TLS policies and MTA-STS --------------------------------------------------------------


def test_tls_verify_mta_sts_and_the_ca_file(tmp_path: Path) -> None:
    ca = LocalCA(tmp_path)
    s = from_dict(
        {
            "smtp": {"tls_ca_file": str(ca.cert_path)},
            "dns": {"mta_sts": False, "mta_sts_port": 8443},
            "domains": {"v.test": {"tls": "verify"}, "broken.test": {"mta_sts": False}},
        }
    )
    assert s.tls_ca_file == ca.cert_path and (s.mta_sts, s.mta_sts_port) == (False, 8443)
    assert s.policy("v.test").tls is TlsPolicy.VERIFY and s.policy("v.test").mta_sts
    assert not s.policy("broken.test").mta_sts
    assert from_dict(s.to_dict()) == s


def test_tls_defaults() -> None:
    s = from_dict({"smtp": {"tls_ca_file": ""}})
    assert s.tls_ca_file is None  # the system CA store
    assert (s.mta_sts, s.mta_sts_port) == (True, 443)
    assert s.policy("x.test").mta_sts and s.policy("x.test").tls is TlsPolicy.OPPORTUNISTIC


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("/nonexistent/ca.pem", "cannot read /nonexistent/ca.pem"),
        ("NOT-PEM", "holds no usable PEM certificate"),
        (7, "expected a file path"),
    ],
)
def test_a_bad_ca_file_is_one_line_naming_the_key(
    tmp_path: Path, value: object, problem: str
) -> None:
    if value == "NOT-PEM":
        bad = tmp_path / "bad.pem"
        bad.write_text("not a certificate\n")
        value = str(bad)
    with pytest.raises(ConfigError, match=r"^smtp\.tls_ca_file: ") as e:
        from_dict({"smtp": {"tls_ca_file": value}})
    assert problem in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"dns": {"mta_sts_port": 70000}}, "dns.mta_sts_port"),
        ({"dns": {"mta_sts": "yes"}}, "dns.mta_sts"),
        ({"domains": {"x.test": {"mta_sts": 1}}}, "domains.x.test.mta_sts"),
    ],
)
def test_mta_sts_errors_name_the_key(data: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        from_dict(data)
