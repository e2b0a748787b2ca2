"""`tls = "verify"`: the MX host's certificate must verify for the name in the MX record
(signed by a CA in smtp.tls_ca_file); a certificate for another name defers the mail
with the reason, and nothing is ever sent in plaintext instead."""

from __future__ import annotations

from tests.support.internet import message
from tests.support.net import wait_for
from tests.support.tls_certs import LocalCA


def test_a_certificate_for_the_mx_name_delivers(net, volley) -> None:
    ca = LocalCA()
    good = net.receiver(tls_context=ca.server_context("mx1.good.test"))
    net.publish("good.test", [good.ip])
    v = volley(
        workers=1,
        config={
            "smtp": {"tls_ca_file": str(ca.cert_path)},
            "domains": {"good.test": {"tls": "verify"}},
        },
    )
    v.drop(message("news@sender.test", ["a@good.test"]))
    wait_for(lambda: v.count("delivered") == 1, timeout=20, message=lambda: f"{v.log()}")
    assert [m.tls for m in good.messages] == [True]
    assert v.stop() == 0


def test_a_certificate_for_another_name_defers_and_sends_nothing(net, volley) -> None:
    ca = LocalCA()
    wrong = net.receiver(tls_context=ca.server_context("mx.elsewhere.test"))
    net.publish("wrong.test", [wrong.ip])
    v = volley(
        workers=1,
        config={
            "smtp": {"tls_ca_file": str(ca.cert_path)},
            "domains": {"wrong.test": {"tls": "verify"}},
        },
    )
    v.drop(message("news@sender.test", ["a@wrong.test"]))
    wait_for(lambda: v.count("deferred") >= 2, timeout=20, message=lambda: f"{v.log()}")
    deferred = next(v.events("deferred"))
    assert deferred["text"].startswith("TLS failure during starttls")
    assert "certificate verify failed: hostname mismatch for mx1.wrong.test" in deferred["text"]
    assert wrong.connections_total >= 2  # it was tried (each retry), over TLS only
    assert wrong.messages == []  # never in plaintext
    assert v.count("delivered") == 0
    assert v.stop() == 0
