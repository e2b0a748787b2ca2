"""Tests for tests.support.receiver: the server's lifecycle, switches and connection counts,
driven with stdlib smtplib over loopback (per-session behaviours: test_receiver_smtp.py)."""

from __future__ import annotations

import smtplib
import socket
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.support.net import wait_for
from tests.support.receiver import TOO_MANY_REPLY, Receiver, self_signed_context
from tests.support.receiver_probe import IP, IP2, MSG, connect, reply_text


def test_stop_does_not_wait_for_stalled_replies(port: int) -> None:
    rx = Receiver(IP, port)
    rx.start()
    with connect(rx) as c, ThreadPoolExecutor(1) as pool:
        c.mail("a@src.test")
        pending = pool.submit(c.rcpt, "stall@d.test")
        wait_for(lambda: rx.stalled_count == 1, timeout=10, message=lambda: repr(rx))
        started = time.monotonic()
        rx.stop()
        assert time.monotonic() - started < 5
        with pytest.raises((smtplib.SMTPServerDisconnected, ConnectionError)):
            pending.result(timeout=10)
    assert (rx.stalled_count, rx.open_connections, rx.is_running) == (0, 0, False)


def test_stop_aborts_idle_connections_and_restart_keeps_records(port: int) -> None:
    rx = Receiver(IP, port)
    rx.start()
    idle = connect(rx)
    with connect(rx) as c:
        c.sendmail("a@src.test", ["bob@d.test"], MSG)
    rx.stop()
    rx.stop()  # idempotent
    with pytest.raises((smtplib.SMTPServerDisconnected, ConnectionError)):
        idle.noop()
    idle.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((IP, port), timeout=10).close()
    with rx:
        with connect(rx) as c:
            c.sendmail("a@src.test", ["bob@d.test"], MSG)
        assert [m.conn_id for m in rx.delivered_to("bob@d.test")] == [2, 3]
        assert rx.connections_total == 3


def test_start_fails_fast_when_address_is_taken(rx: Receiver) -> None:
    started = time.monotonic()
    with pytest.raises(OSError):
        Receiver(IP, rx.port).start()
    assert time.monotonic() - started < 5  # not aiosmtpd's ready timeout


def test_greeting_refuses_until_switched_back(port: int) -> None:
    with Receiver(IP, port, greeting=(421, "4.3.2 busy")) as rx:
        with pytest.raises(smtplib.SMTPConnectError) as info:
            smtplib.SMTP(IP, port, timeout=10)
        assert (info.value.smtp_code, info.value.smtp_error) == (421, b"4.3.2 busy")
        rx.set_greeting(None)
        with connect(rx) as c:
            c.sendmail("a@src.test", ["bob@d.test"], MSG)
        rx.set_greeting((554, "5.3.2 go away"))
        with pytest.raises(smtplib.SMTPConnectError) as info:
            smtplib.SMTP(IP, port, timeout=10)
        assert info.value.smtp_code == 554
        assert (rx.connections_total, rx.rejected_connections, rx.peak_connections) == (3, 2, 1)
        assert rx.transactions_per_connection == {1: 0, 2: 1, 3: 0}
        assert [m.conn_id for m in rx.messages] == [2]


def test_greeting_must_be_a_refusal(port: int) -> None:
    with pytest.raises(ValueError):
        Receiver(IP, port, greeting=(220, "hello"))


def test_max_connections_refuses_the_one_over_the_limit(port: int) -> None:
    with Receiver(IP, port, max_connections=2) as rx:
        first, second = connect(rx), connect(rx)
        with pytest.raises(smtplib.SMTPConnectError) as info:
            smtplib.SMTP(IP, port, timeout=10)
        assert (info.value.smtp_code, info.value.smtp_error) == reply_text(TOO_MANY_REPLY)
        assert (rx.peak_connections, rx.open_connections, rx.connections_total) == (2, 2, 3)
        assert rx.rejected_connections == 1
        first.quit()
        wait_for(lambda: rx.open_connections == 1, timeout=10, message=lambda: repr(rx))
        with connect(rx) as third:
            third.sendmail("a@src.test", ["bob@d.test"], MSG)
        second.quit()
        assert rx.peak_connections == 2


def test_counts_exclude_the_start_probe_and_track_peak(rx: Receiver) -> None:
    assert (rx.connections_total, rx.peak_connections, rx.open_connections) == (0, 0, 0)
    assert rx.transactions_per_connection == {}
    clients = [connect(rx) for _ in range(3)]
    assert (rx.connections_total, rx.peak_connections, rx.open_connections) == (3, 3, 3)
    for c in clients:
        c.quit()
    wait_for(lambda: rx.open_connections == 0, timeout=10, message=lambda: repr(rx))
    with connect(rx) as c:
        for _ in range(3):
            c.sendmail("a@src.test", ["bob@d.test"], MSG)
        c.mail("a@src.test")  # a transaction that never reaches DATA still counts
        c.rset()
    assert (rx.connections_total, rx.peak_connections) == (4, 3)
    assert rx.transactions_per_connection == {1: 0, 2: 0, 3: 0, 4: 4}


def test_starttls_with_self_signed_certificate(port: int, tmp_path: Path) -> None:
    server_ctx, cert_path = self_signed_context(IP, tmp_path)
    assert cert_path.parent == tmp_path
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cert.pem"]  # key not left on disk
    with Receiver(IP, port, tls_context=server_ctx) as rx, connect(rx) as c:
        assert c.has_extn("starttls")
        client_ctx = ssl.create_default_context(cafile=str(cert_path))  # verifies name and chain
        assert c.starttls(context=client_ctx)[0] == 220
        c.ehlo()
        assert not c.has_extn("starttls")
        assert not c.has_extn("auth")
        c.sendmail("a@src.test", ["bob@d.test"], MSG)
        c.quit()
        [m] = rx.messages
        assert (m.tls, m.data) == (True, MSG)
        # connection_made runs again after STARTTLS; it must not count a second connection.
        assert (rx.connections_total, rx.peak_connections) == (1, 1)
        wait_for(lambda: rx.open_connections == 0, timeout=10, message=lambda: repr(rx))


def test_a_relay_requires_starttls_then_auth_and_records_the_user(
    port: int, tmp_path: Path
) -> None:
    server_ctx, cert_path = self_signed_context(IP, tmp_path)
    users = {"volley": "s3cret"}
    with Receiver(IP, port, tls_context=server_ctx, require_starttls=True, users=users) as rx:
        with connect(rx) as c:
            assert not c.has_extn("auth")  # not before TLS
            assert c.mail("a@src.test")[0] == 530  # "Must issue a STARTTLS command first"
            c.starttls(context=ssl.create_default_context(cafile=str(cert_path)))
            c.ehlo()
            assert c.has_extn("auth")
            with pytest.raises(smtplib.SMTPAuthenticationError):
                c.login("volley", "wrong")
            c.login("volley", "s3cret")
            c.sendmail("a@src.test", ["bob@d.test"], MSG)
        [m] = rx.messages
        assert (m.auth_user, m.tls) == ("volley", True)
        # smtplib tries each mechanism offered before giving up on the wrong password.
        *refused, accepted = rx.logins
        assert refused and all(user == "volley" and not ok for _, user, ok in refused)
        assert accepted[1:] == ("volley", True)
        assert rx.auth_commands == len(rx.logins)


def test_an_auth_line_in_clear_is_counted_though_refused(port: int, tmp_path: Path) -> None:
    server_ctx, _ = self_signed_context(IP, tmp_path)
    with Receiver(IP, port, tls_context=server_ctx, users={"u": "p"}) as rx, connect(rx) as c:
        code, _ = c.docmd("AUTH", "PLAIN AHUAcA==")
        assert code == 538  # aiosmtpd: encryption required; the authenticator never ran
        assert (rx.auth_commands, rx.logins) == (1, [])


def test_implicit_tls_relay(port: int, tmp_path: Path) -> None:
    server_ctx, cert_path = self_signed_context(IP, tmp_path)
    client_ctx = ssl.create_default_context(cafile=str(cert_path))
    with Receiver(IP, port, implicit_tls_context=server_ctx, users={"u": "p"}) as rx:
        with smtplib.SMTP_SSL(IP, port, context=client_ctx, timeout=10) as c:
            c.login("u", "p")
            c.sendmail("a@src.test", ["bob@d.test"], MSG)
        [m] = rx.messages
        assert (m.auth_user, m.tls) == ("u", True)
        assert rx.connections_total == 1  # the TLS start() probe is not counted


def test_two_receivers_share_a_port_on_different_ips(port: int) -> None:
    with Receiver(IP, port) as a, Receiver(IP2, port) as b:
        with connect(a, IP) as c:
            c.sendmail("a@src.test", ["to-a@d.test"], MSG)
        with connect(b, IP2) as c:
            c.sendmail("a@src.test", ["to-b@d.test"], MSG)
            c.sendmail("a@src.test", ["to-b@d.test"], MSG)
        assert [m.rcpt_tos for m in a.messages] == [("to-a@d.test",)]
        assert [m.rcpt_tos for m in b.messages] == [("to-b@d.test",)] * 2
        assert (a.connections_total, b.connections_total) == (1, 1)


def test_concurrent_load_loses_nothing(rx: Receiver) -> None:
    conns, per_conn = 4, 100
    barrier = threading.Barrier(conns)

    def send(worker: int) -> None:
        with connect(rx) as c:
            barrier.wait(timeout=10)
            for i in range(per_conn):
                c.sendmail("a@src.test", [f"w{worker}-{i}@d.test"], MSG)

    with ThreadPoolExecutor(conns) as pool:
        list(pool.map(send, range(conns)))
    got = rx.messages
    assert len(got) == conns * per_conn
    assert {m.rcpt_tos[0] for m in got} == {
        f"w{w}-{i}@d.test" for w in range(conns) for i in range(per_conn)
    }
    assert sorted(rx.transactions_per_connection.values()) == [per_conn] * conns
    assert rx.peak_connections == conns
