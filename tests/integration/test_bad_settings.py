"""Issue #9: every setting is checked before a worker starts; a bad one is one line that
names the key, exit status 2, never a traceback (`--dns not-an-ip` once crash-looped the
workers; a busy or invalid metrics.listen ended in OSError / OverflowError tracebacks).
And `volley queue` on a spool that does not exist is an error, not an empty table."""

from __future__ import annotations

import socket

import pytest

from tests.support.net import free_port


def _one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    assert "Traceback" not in text
    return lines[0]


@pytest.mark.parametrize(
    ("args", "config", "expected"),
    [
        (["--dns", "not-an-ip"], {}, "dns.nameservers: 'not-an-ip' is not an IP address"),
        ([], {"metrics": {"listen": "127.0.0.1:99999999"}}, "metrics.listen: "),
        ([], {"metrics": {"listen": "example.test:9108"}}, "metrics.listen: "),
        ([], {"smtp": {"helo_name": "mail_out.example.com"}}, "smtp.helo_name: "),
        # A DKIM key that cannot be read is the configuration's fault, not each message's.
        (
            [],
            {"dkim": {"sender.test": {"selector": "s1", "key": "/nonexistent/s1.pem"}}},
            'dkim."sender.test" (selector s1): cannot read /nonexistent/s1.pem',
        ),
        # A relay's password file is read before anything starts (issue #10 §4).
        (
            [],
            {
                "routes": {
                    "default": {
                        "relay": "smtp.relay.test:587",
                        "auth": {"user": "u", "password_file": "/nonexistent/relay.pw"},
                    }
                }
            },
            "routes.default.auth.password_file: cannot read /nonexistent/relay.pw",
        ),
        (
            [],
            {"smtp": {"tls_ca_file": "/nonexistent/ca.pem"}},
            "smtp.tls_ca_file: cannot read /nonexistent/ca.pem: No such file or directory",
        ),
    ],
)
def test_a_bad_setting_is_one_line_and_status_2(volley, args, config, expected) -> None:
    v = volley(workers=1, config=config, start=False)
    v.write_config()
    got = v.cli("run", *args, timeout=60)
    assert got.returncode == 2, got.stderr
    assert expected in _one_line(got.stderr)
    assert not (v.spool / "queue").exists()  # refused before anything was touched


def test_a_busy_metrics_listen_is_one_line_and_status_2(volley) -> None:
    port = free_port(["127.0.0.1"])
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", port))
        busy.listen()
        v = volley(workers=1, config={"metrics": {"listen": f"127.0.0.1:{port}"}}, start=False)
        v.write_config()
        got = v.cli("run", timeout=60)
    assert got.returncode == 2, got.stderr
    line = _one_line(got.stderr.replace("volley: warning", "").strip())
    assert f"metrics.listen 127.0.0.1:{port}: Address already in use" in line


def test_the_smtp_listener_refuses_to_start_on_a_busy_port_or_a_missing_file(
    volley, tmp_path
) -> None:
    port = free_port(["127.0.0.1"])
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", port))
        busy.listen()
        v = volley(workers=2, config={"smtpd": {"listen": [f"127.0.0.1:{port}"]}}, start=False)
        v.write_config()
        got = v.cli("run", timeout=60)
    assert got.returncode == 2, got.stderr
    line = _one_line(got.stderr.replace("volley: warning", "").strip())
    assert f"smtpd.listen 127.0.0.1:{port}: Address already in use" in line
    users = tmp_path / "no-such-users-file"
    config = {"smtpd": {"listen": ["127.0.0.1:0"], "users_file": str(users)}}
    w = volley(workers=1, config=config, start=False)
    w.write_config()
    got = w.cli("run", timeout=60)
    assert got.returncode == 2, got.stderr
    assert f"smtpd.users_file: {users}: No such file" in _one_line(got.stderr)


def test_volley_queue_on_a_missing_spool_is_an_error(volley, tmp_path) -> None:
    v = volley(workers=1, start=False)
    v.write_config()
    got = v.cli("queue", "--spool", str(tmp_path / "nonexistent"))
    assert got.returncode == 1
    assert _one_line(got.stderr) == f"volley: no spool at {tmp_path / 'nonexistent'} (spool.path)"
