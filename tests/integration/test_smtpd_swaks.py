"""swaks, the administrator's SMTP test tool, against the listener: plain from a trusted
address, and from an address outside relay_networks (swaks binds 127.0.0.2): refused
without AUTH, STARTTLS with AUTH PLAIN and AUTH LOGIN accepted, a wrong password 535."""

from __future__ import annotations

import shutil
import subprocess

from tests.support.net import free_port, wait_for
from tests.support.submit import add_user, listening, tls_files


def swaks(port: int, source: str, *args: str) -> subprocess.CompletedProcess[str]:
    """swaks from the client address `source` (--local-interface binds it)."""
    exe = shutil.which("swaks")
    assert exe, "swaks is missing: .ci/install-swaks (make test runs .ci/need-test-peers)"
    return subprocess.run(
        [exe, "--server", "127.0.0.1", "--port", str(port), "--local-interface", source,
         "--from", "app@sender.test", "--helo", "app.client.test", "--timeout", "20", *args],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_swaks_with_and_without_auth(net, volley, tmp_path) -> None:
    rx = net.domain("dest.test")[0]
    cert, key = tls_files(tmp_path / "tls")
    port = free_port(["127.0.0.1"])
    config = listening(
        port,
        users_file=str(tmp_path / "users"),
        tls_cert=str(cert),
        tls_key=str(key),
        # A client at 127.0.0.1 may relay without AUTH; one at 127.0.0.2 is a stranger.
        relay_networks=["127.0.0.1/32"],
    )
    v = volley(workers=2, config=config, start=False)
    add_user(v, "swaks-user", "pa55word")
    v.start()

    plain = swaks(port, "127.0.0.1", "--to", "one@dest.test", "--header", "Subject: plain")
    assert plain.returncode == 0, plain.stdout + plain.stderr
    assert "250 2.0.0 Ok: queued as" in plain.stdout

    denied = swaks(port, "127.0.0.2", "--to", "two@dest.test")
    assert denied.returncode != 0 and "530 5.7.0 Authentication required" in denied.stdout

    for i, mech in enumerate(("PLAIN", "LOGIN")):
        got = swaks(
            port, "127.0.0.2", "--to", f"auth{i}@dest.test", "--tls", "--auth", mech,
            "--auth-user", "swaks-user", "--auth-password", "pa55word",
        )  # fmt: skip
        assert got.returncode == 0, got.stdout + got.stderr
        assert "220 2.0.0 Ready to start TLS" in got.stdout
        assert "235 2.7.0 Authentication successful" in got.stdout

    wrong = swaks(
        port, "127.0.0.2", "--to", "three@dest.test", "--tls", "--auth", "PLAIN",
        "--auth-user", "swaks-user", "--auth-password", "nope",
    )  # fmt: skip
    assert wrong.returncode != 0 and "535 5.7.8" in wrong.stdout

    wait_for(lambda: len(rx.messages) == 3, timeout=20)
    assert sorted(m.rcpt_tos[0] for m in rx.messages) == [
        "auth0@dest.test",
        "auth1@dest.test",
        "one@dest.test",
    ]
    assert v.stop() == 0
