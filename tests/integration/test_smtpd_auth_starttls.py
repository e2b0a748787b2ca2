"""A client outside relay_networks submits over STARTTLS with AUTH (smtplib): AUTH is
offered only once TLS is up, a wrong password gets 535, without AUTH nothing relays, and
with it the mail goes through; Received: says ESMTPSA and does not name the user."""

from __future__ import annotations

import smtplib

import pytest

from tests.support.internet import message
from tests.support.net import wait_for
from tests.support.submit import add_user, client_context, listening, port_of, tls_files


def test_starttls_then_auth_then_relay(net, volley, tmp_path) -> None:
    rx = net.domain("dest.test")[0]
    cert, key = tls_files(tmp_path / "tls")
    config = listening(
        relay_networks=[],  # 127.0.0.1 is no trusted network here: it must log in
        users_file=str(tmp_path / "users"),
        tls_cert=str(cert),
        tls_key=str(key),
    )
    v = volley(workers=2, config=config, start=False)
    add_user(v, "newsletter", "correct horse battery")
    v.start()
    port = port_of(v)

    with smtplib.SMTP("127.0.0.1", port) as s:
        s.ehlo("app.test")
        assert s.has_extn("starttls")
        assert s.has_extn("auth")  # loopback: the password never leaves the host
        # Without AUTH a stranger may not relay.
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:
            s.sendmail("a@sender.test", ["x@dest.test"], message("a@sender.test", ["x@dest.test"]))
        assert refused.value.smtp_code == 530
        s.starttls(context=client_context(cert))
        s.ehlo("app.test")
        assert not s.has_extn("starttls") and s.has_extn("auth")
        with pytest.raises(smtplib.SMTPAuthenticationError) as bad:
            s.login("newsletter", "wrong")
        assert bad.value.smtp_code == 535
        s.login("newsletter", "correct horse battery")
        data = message("a@sender.test", ["x@dest.test"], seq=7)
        assert s.sendmail("a@sender.test", ["x@dest.test"], data) == {}

    wait_for(lambda: len(rx.messages) == 1, timeout=20)
    got = rx.messages[0].data
    assert got.endswith(data)
    received = got[: got.index(b"From: ")]
    assert b"with ESMTPSA id" in received and b"newsletter" not in received
    wait_for(lambda: v.count("received") == 1, timeout=10)
    rec = next(v.events("received"))
    assert (rec["via"], rec["auth"]) == ("smtp", "newsletter")
    assert v.stop() == 0
