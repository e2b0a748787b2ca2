"""`[routes] tls = "verify"`: the relay's certificate must verify for the relay's name
(signed by a CA in smtp.tls_ca_file) before the password goes over it.  A relay that
answers with a certificate for another name — someone else listening there — gets no
AUTH line and no mail; it is deferred with the reason."""

from __future__ import annotations

from pathlib import Path

from tests.support.internet import message
from tests.support.net import wait_for
from tests.support.tls_certs import LocalCA


def test_the_password_goes_only_to_a_relay_whose_certificate_verifies(
    net, volley, tmp_path: Path
) -> None:
    ca = LocalCA()
    good = net.relay(
        "smtp.good.test", tls_context=ca.server_context("smtp.good.test"), users={"u": "pw"}
    )
    fake = net.relay(
        "smtp.fake.test", tls_context=ca.server_context("smtp.other.test"), users={"u": "pw"}
    )
    password_file = tmp_path / "pw"
    password_file.write_text("pw\n")
    auth = {"user": "u", "password_file": str(password_file)}
    v = volley(
        config={
            "smtp": {"tls_ca_file": str(ca.cert_path)},
            "routes": {
                "good.test": {
                    "relay": f"smtp.good.test:{good.port}",
                    "tls": "verify",
                    "auth": auth,
                },
                "fake.test": {
                    "relay": f"smtp.fake.test:{fake.port}",
                    "tls": "verify",
                    "auth": auth,
                },
            },
        }
    )
    v.drop(message("news@sender.test", ["a@good.test"], seq=1))
    v.drop(message("news@sender.test", ["b@fake.test"], seq=2))
    wait_for(
        lambda: good.messages and v.count("deferred") >= 1,
        timeout=30,
        message=lambda: f"{good!r} {fake!r}\n{v.log()}",
    )
    assert [(m.auth_user, m.tls) for m in good.messages] == [("u", True)]
    deferred = next(v.events("deferred"))
    assert deferred["rcpt"] == "b@fake.test"
    assert "certificate verify failed: hostname mismatch for smtp.fake.test" in deferred["text"]
    assert fake.connections_total >= 1 and fake.auth_commands == 0 and fake.messages == []
    assert v.stop() == 0
