"""Implicit TLS (RFC 8314, port-465 style) next to the plain listener: TLS from the first
byte, AUTH offered at once, and the plain port offers STARTTLS."""

from __future__ import annotations

import smtplib

from tests.support.internet import message
from tests.support.net import free_port, wait_for
from tests.support.submit import add_user, client_context, listening, port_of, tls_files


def test_implicit_tls_with_auth(net, volley, tmp_path) -> None:
    rx = net.domain("dest.test")[0]
    cert, key = tls_files(tmp_path / "tls")
    tls_port = free_port(["127.0.0.1"])
    config = listening(
        relay_networks=[],
        users_file=str(tmp_path / "users"),
        tls_cert=str(cert),
        tls_key=str(key),
        implicit_tls_listen=[f"127.0.0.1:{tls_port}"],
        received_auth_user=True,
    )
    v = volley(workers=2, config=config, start=False)
    add_user(v, "app", "s3cret")
    v.start()
    assert f"127.0.0.1:{tls_port} (TLS)" in v.text_output()

    with smtplib.SMTP_SSL("127.0.0.1", tls_port, context=client_context(cert)) as s:
        s.ehlo("app.test")
        assert s.has_extn("auth") and not s.has_extn("starttls")
        s.login("app", "s3cret")
        data = message("a@sender.test", ["y@dest.test"], seq=1)
        assert s.sendmail("a@sender.test", ["y@dest.test"], data) == {}
    with smtplib.SMTP("127.0.0.1", port_of(v)) as plain:
        plain.ehlo("app.test")
        assert plain.has_extn("starttls")

    wait_for(lambda: len(rx.messages) == 1, timeout=20)
    got = rx.messages[0].data
    # received_auth_user = true: this instance discloses who logged in.
    assert b"with ESMTPSA id" in got and b"(Authenticated sender: app)" in got
    assert v.stop() == 0
