"""Never an open relay: a client outside relay_networks that has not logged in cannot
queue anything — 530 at MAIL, or 554 5.7.1 per recipient when bounce domains make MAIL
acceptable — and neither the spool nor any receiver sees a byte of it."""

from __future__ import annotations

import smtplib

import pytest

from tests.support.crash import metric
from tests.support.internet import message
from tests.support.net import wait_for
from tests.support.submit import listening, port_of

STRANGER = ("127.0.0.2", 0)  # the client binds this address: outside relay_networks


def test_an_unauthenticated_stranger_queues_nothing(net, volley, tmp_path) -> None:
    rx = net.domain("dest.test")[0]
    plain = volley(workers=2, config=listening(relay_networks=["127.0.0.1/32"]))
    data = message("spam@evil.test", ["victim@dest.test"])
    with smtplib.SMTP("127.0.0.1", port_of(plain), source_address=STRANGER) as s:
        s.ehlo("evil.test")
        with pytest.raises(smtplib.SMTPSenderRefused) as e:
            s.sendmail("spam@evil.test", ["victim@dest.test"], data)
        assert e.value.smtp_code == 530 and b"5.7.0 Authentication required" in e.value.smtp_error
        # Pipelined anyway: every later command is refused too, DATA never starts.
        s.putcmd("MAIL", "FROM:<spam@evil.test>")
        s.putcmd("RCPT", "TO:<victim@dest.test>")
        s.putcmd("DATA")
        assert [s.getreply()[0] for _ in range(3)] == [530, 503, 503]

    # A trusted client on the same listener is served (the test can fail).
    with smtplib.SMTP("127.0.0.1", port_of(plain), source_address=("127.0.0.1", 0)) as s:
        assert (
            s.sendmail(
                "ok@sender.test",
                ["friend@dest.test"],
                message("ok@sender.test", ["friend@dest.test"]),
            )
            == {}
        )
    wait_for(lambda: len(rx.messages) == 1, timeout=20)
    assert list(rx.messages[0].rcpt_tos) == ["friend@dest.test"]
    assert plain.stop() == 0

    # With a bounce domain MAIL is accepted from anyone, and each outside recipient is not.
    bounces = volley(
        workers=2,
        config=listening(relay_networks=["127.0.0.1/32"], bounce_domains=["bounces.test"]),
    )
    with smtplib.SMTP("127.0.0.1", port_of(bounces), source_address=STRANGER) as s:
        s.ehlo("evil.test")
        with pytest.raises(smtplib.SMTPRecipientsRefused) as r:
            s.sendmail("spam@evil.test", ["victim@dest.test", "v2@dest.test"], data)
        assert {code for code, _ in r.value.recipients.values()} == {554}
        assert all(b"5.7.1 Relay access denied" in text for _, text in r.value.recipients.values())
    wait_for(
        lambda: (
            metric(bounces.metrics_port, "volley_smtpd_rejected_total", reason="relay_denied") == 2
        ),
        timeout=10,
    )
    assert bounces.queued() == [] and plain.queued() == []
    assert len(rx.messages) == 1 and not rx.delivered_to("victim@dest.test")
    assert bounces.count("received") == 0
    assert bounces.stop() == 0
