"""Tests for tests.support.receiver: every behaviour driven with stdlib smtplib over loopback."""

from __future__ import annotations

import smtplib
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

import pytest

from tests.support.net import free_port, wait_for
from tests.support.receiver import (
    DATAFAIL_REPLY,
    DATATEMPFAIL_REPLY,
    FLAKY_REPLY,
    PERMFAIL_REPLY,
    TEMPFAIL_REPLY,
    TOO_MANY_REPLY,
    Behaviour,
    Receiver,
    Scenario,
    scenario_for,
    self_signed_context,
)

IP = "127.0.0.2"
IP2 = "127.0.0.3"
MSG = b"From: a@src.test\r\nSubject: hi\r\n\r\n.leading dot\r\nbody \xc3\xa9\r\n"


def reply_text(reply: str) -> tuple[int, bytes]:
    code, text = reply.split(" ", 1)
    return int(code), text.encode()


@pytest.fixture
def port() -> int:
    return free_port([IP, IP2])


@pytest.fixture
def rx(port: int) -> Iterator[Receiver]:
    with Receiver(IP, port, name="mx.dst.test") as receiver:
        yield receiver


def connect(receiver: Receiver, ip: str = IP) -> smtplib.SMTP:
    client = smtplib.SMTP(ip, receiver.port, local_hostname="client.test", timeout=10)
    client.ehlo()
    return client


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("bob@x.test", Scenario(Behaviour.ACCEPT)),
        ("tempfail-1@x.test", Scenario(Behaviour.TEMPFAIL)),
        ("PermFail@x.test", Scenario(Behaviour.PERMFAIL)),
        ("flaky3-a@x.test", Scenario(Behaviour.FLAKY, 3)),
        ("flaky12-a@x.test", Scenario(Behaviour.FLAKY, 12)),
        ("flaky-a@x.test", Scenario(Behaviour.ACCEPT)),
        ("datafail@x.test", Scenario(Behaviour.DATAFAIL)),
        ("datatempfail@x.test", Scenario(Behaviour.DATATEMPFAIL)),
        ("dropdata-1@x.test", Scenario(Behaviour.DROPDATA)),
        ("dropdataonce-1@x.test", Scenario(Behaviour.DROPDATAONCE)),
        ("stall@x.test", Scenario(Behaviour.STALL)),
        ("closercpt@x.test", Scenario(Behaviour.CLOSERCPT)),
        ("rcpt421-z@x.test", Scenario(Behaviour.RCPT421)),
        ("bob-tempfail@x.test", Scenario(Behaviour.ACCEPT)),  # prefix, not substring
        ("tempfail.test@permfail.test", Scenario(Behaviour.TEMPFAIL)),  # local part only
    ],
)
def test_scenario_for_keys_on_local_part_prefix(address: str, expected: Scenario) -> None:
    assert scenario_for(address) == expected


def test_accept_records_message_exactly(rx: Receiver) -> None:
    with connect(rx) as c:
        c.mail("a@src.test", ["BODY=8BITMIME", "SIZE=100"])
        assert c.rcpt("bob@dst.test") == (250, b"2.1.5 OK")
        code, _ = c.data(MSG)
    assert code == 250
    [m] = rx.messages
    assert m.mail_from == "a@src.test"
    assert m.rcpt_tos == ("bob@dst.test",)
    assert m.data == MSG  # dot-unstuffed, CRLFs and 8-bit bytes intact
    assert m.mail_options == ("BODY=8BITMIME", "SIZE=100")
    assert m.peer == "127.0.0.1"
    assert m.conn_id == 1
    assert (m.tls, m.dropped) == (False, False)
    assert abs(m.at - time.time()) < 60
    assert rx.delivered_to("bob@dst.test") == [m]
    assert rx.delivered_to("other@dst.test") == []
    assert rx.rcpt_attempts("bob@dst.test") == 1


def test_peer_is_the_client_source_address(rx: Receiver) -> None:
    client = smtplib.SMTP(IP, rx.port, source_address=("127.0.0.9", 0), timeout=10)
    with client as c:
        c.sendmail("a@src.test", ["bob@dst.test"], MSG)
    assert rx.messages[0].peer == "127.0.0.9"


@pytest.mark.parametrize(
    ("rcpt", "reply"),
    [
        ("tempfail@dst.test", TEMPFAIL_REPLY),
        ("permfail@dst.test", PERMFAIL_REPLY),
    ],
)
def test_rcpt_refusals_are_never_recorded(rx: Receiver, rcpt: str, reply: str) -> None:
    with connect(rx) as c:
        with pytest.raises(smtplib.SMTPRecipientsRefused) as info:
            c.sendmail("a@src.test", [rcpt], MSG)
        assert info.value.recipients == {rcpt: reply_text(reply)}
        # The second time is refused the same way: the behaviour does not wear off.
        c.mail("a@src.test")
        assert c.rcpt(rcpt) == reply_text(reply)
    assert rx.messages == []
    assert rx.rcpt_attempts(rcpt) == 2


def test_partial_refusal_records_only_accepted_recipients(rx: Receiver) -> None:
    with connect(rx) as c:
        refused = c.sendmail(
            "a@src.test", ["tempfail@d.test", "bob@d.test", "permfail@d.test"], MSG
        )
    assert set(refused) == {"tempfail@d.test", "permfail@d.test"}
    [m] = rx.messages
    assert m.rcpt_tos == ("bob@d.test",)


def test_flaky_counts_attempts_of_the_exact_address_across_connections(rx: Receiver) -> None:
    with connect(rx) as c:
        c.mail("a@src.test")
        assert c.rcpt("flaky2-a@d.test") == reply_text(FLAKY_REPLY)
        assert c.rcpt("flaky2-b@d.test") == reply_text(FLAKY_REPLY)  # its own count
    with connect(rx) as c:
        c.mail("a@src.test")
        assert c.rcpt("flaky2-a@d.test") == reply_text(FLAKY_REPLY)
        assert c.rcpt("flaky2-a@d.test") == (250, b"2.1.5 OK")
        assert c.rcpt("flaky2-b@d.test") == reply_text(FLAKY_REPLY)
    assert rx.rcpt_attempts("flaky2-a@d.test") == 3
    assert rx.rcpt_attempts("flaky2-b@d.test") == 2


@pytest.mark.parametrize(
    ("rcpt", "reply"),
    [("datafail@d.test", DATAFAIL_REPLY), ("datatempfail@d.test", DATATEMPFAIL_REPLY)],
)
def test_data_refusals(rx: Receiver, rcpt: str, reply: str) -> None:
    with connect(rx) as c:
        with pytest.raises(smtplib.SMTPDataError) as info:
            c.sendmail("a@src.test", [rcpt, "bob@d.test"], MSG)
        assert (info.value.smtp_code, info.value.smtp_error) == reply_text(reply)
        # The session stays usable after the refusal.
        c.sendmail("a@src.test", ["bob@d.test"], MSG)
    assert [m.rcpt_tos for m in rx.messages] == [("bob@d.test",)]


def test_dropdata_records_then_drops_without_reply(rx: Receiver) -> None:
    with connect(rx) as c, pytest.raises(smtplib.SMTPServerDisconnected):
        c.sendmail("a@src.test", ["dropdata@d.test"], MSG)
    [m] = rx.messages
    assert (m.rcpt_tos, m.data, m.dropped) == (("dropdata@d.test",), MSG, True)
    with connect(rx) as c, pytest.raises(smtplib.SMTPServerDisconnected):
        c.sendmail("a@src.test", ["dropdata@d.test"], MSG)
    assert [m.dropped for m in rx.delivered_to("dropdata@d.test")] == [True, True]
    wait_for(lambda: rx.open_connections == 0, timeout=10, message=lambda: repr(rx))


def test_dropdataonce_drops_first_delivery_only(rx: Receiver) -> None:
    rcpt = "dropdataonce-7@d.test"
    with connect(rx) as c, pytest.raises(smtplib.SMTPServerDisconnected):
        c.sendmail("a@src.test", [rcpt], MSG)
    with connect(rx) as c:
        assert c.sendmail("a@src.test", [rcpt], MSG) == {}
    got = rx.delivered_to(rcpt)
    assert [(m.dropped, m.conn_id, m.data) for m in got] == [(True, 1, MSG), (False, 2, MSG)]


def test_closercpt_aborts_at_rcpt(rx: Receiver) -> None:
    with connect(rx) as c:
        c.mail("a@src.test")
        with pytest.raises(smtplib.SMTPServerDisconnected):
            c.rcpt("closercpt@d.test")
    assert rx.messages == []
    assert rx.rcpt_attempts("closercpt@d.test") == 1
    wait_for(lambda: rx.open_connections == 0, timeout=10, message=lambda: repr(rx))


def test_rcpt421_replies_then_closes(rx: Receiver) -> None:
    with connect(rx) as c:
        c.mail("a@src.test")
        assert c.rcpt("rcpt421@d.test") == (421, b"4.4.2 closing (test)")
        with pytest.raises(smtplib.SMTPServerDisconnected):
            c.noop()
    wait_for(lambda: rx.open_connections == 0, timeout=10, message=lambda: repr(rx))
    assert rx.messages == []


def test_stall_holds_rcpt_reply_until_released(rx: Receiver) -> None:
    with connect(rx) as c, ThreadPoolExecutor(1) as pool:
        c.mail("a@src.test")
        pending = pool.submit(c.rcpt, "stall@d.test")
        wait_for(lambda: rx.stalled_count == 1, timeout=10, message=lambda: repr(rx))
        assert not pending.done()
        rx.release_stalled()
        assert pending.result(timeout=10) == (250, b"2.1.5 OK")
        assert rx.stalled_count == 0
        # Released for good: a later stall address is answered at once.
        assert c.rcpt("stall-2@d.test") == (250, b"2.1.5 OK")
        code, _ = c.data(MSG)
    assert code == 250
    assert rx.messages[0].rcpt_tos == ("stall@d.test", "stall-2@d.test")


def test_stall_gives_up_after_stall_timeout(port: int) -> None:
    with Receiver(IP, port, stall_timeout=0.2) as rx, connect(rx) as c:
        c.mail("a@src.test")
        assert c.rcpt("stall@d.test") == (250, b"2.1.5 OK")


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


def test_ehlo_advertises_per_flags(port: int) -> None:
    with Receiver(IP, port) as rx, connect(rx) as c:
        assert all(c.has_extn(e) for e in ("pipelining", "smtputf8", "8bitmime", "size"))
        assert not c.has_extn("starttls")
        assert not c.has_extn("auth")
        assert c.esmtp_features["size"] == str(60 * 1024 * 1024)
    with (
        Receiver(IP, port, pipelining=False, smtputf8=False, eightbitmime=False) as rx,
        connect(rx) as c,
    ):
        assert not any(c.has_extn(e) for e in ("pipelining", "smtputf8", "8bitmime"))
        # smtplib refuses to send an unadvertised SMTPUTF8 itself, so send it raw.
        assert c.docmd("MAIL", "FROM:<a@src.test> SMTPUTF8")[0] == 501
        assert c.mail("a@src.test", ["BODY=8BITMIME"]) == (
            555,
            b"5.5.4 BODY=8BITMIME not supported (test)",
        )
        assert c.mail("a@src.test", ["BODY=7BIT", "SIZE=10"])[0] == 250


def test_mail_parameters_accepted_and_unknown_ones_refused(rx: Receiver) -> None:
    with connect(rx) as c:
        assert c.mail("a@src.test", ["SIZE=1234", "BODY=8BITMIME", "SMTPUTF8"])[0] == 250
        c.rset()
        assert c.mail("a@src.test", ["RET=HDRS"])[0] == 555  # DSN is not offered
        assert c.mail("a@src.test", [f"SIZE={60 * 1024 * 1024 + 1}"])[0] == 552


def recv_replies(f: BinaryIO, n: int) -> list[int]:
    codes = []
    for _ in range(n):
        while True:
            line = f.readline()
            if line[3:4] != b"-":
                codes.append(int(line[:3]))
                break
    return codes


def test_pipelined_group_gets_replies_in_order(rx: Receiver) -> None:
    with socket.create_connection((IP, rx.port), timeout=10) as s, s.makefile("rb") as f:
        assert recv_replies(f, 1) == [220]
        s.sendall(b"EHLO client.test\r\n")
        assert recv_replies(f, 1) == [250]
        s.sendall(
            b"MAIL FROM:<a@src.test>\r\nRCPT TO:<bob@d.test>\r\n"
            b"RCPT TO:<permfail@d.test>\r\nRCPT TO:<carol@d.test>\r\nDATA\r\n"
        )
        assert recv_replies(f, 5) == [250, 250, 550, 250, 354]
        s.sendall(b"Subject: x\r\n\r\n..dotted\r\n.\r\nQUIT\r\n")
        assert recv_replies(f, 2) == [250, 221]
    [m] = rx.messages
    assert (m.rcpt_tos, m.data) == (
        ("bob@d.test", "carol@d.test"),
        b"Subject: x\r\n\r\n.dotted\r\n",
    )


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


def test_self_signed_context_for_a_dns_name(tmp_path: Path) -> None:
    _, cert_path = self_signed_context("mx.dst.test", tmp_path)
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["mx.dst.test"]


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
