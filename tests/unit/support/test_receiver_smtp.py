"""Tests for tests.support.receiver_smtp: every per-session behaviour, driven with stdlib
smtplib over loopback through a running Receiver."""

from __future__ import annotations

import smtplib
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from typing import BinaryIO

import pytest

from tests.support.net import wait_for
from tests.support.receiver import Receiver
from tests.support.receiver_probe import IP, MSG, connect, reply_text
from tests.support.receiver_scenarios import (
    DATAFAIL_REPLY,
    DATATEMPFAIL_REPLY,
    FLAKY_REPLY,
    PERMFAIL_REPLY,
    TEMPFAIL_REPLY,
)


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


def test_the_ehlo_name_and_the_peak_per_client_address(rx: Receiver) -> None:
    clients = [
        smtplib.SMTP(IP, rx.port, local_hostname=f"c{i}.test", source_address=(ip, 0), timeout=10)
        for i, ip in enumerate(("127.0.0.9", "127.0.0.9", "127.0.0.10"))
    ]
    for c in clients:
        c.sendmail("a@src.test", ["bob@dst.test"], MSG)
        c.quit()
    assert [m.helo for m in rx.messages] == ["c0.test", "c1.test", "c2.test"]
    assert rx.peak_connections_by_peer == {"127.0.0.9": 2, "127.0.0.10": 1}


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
