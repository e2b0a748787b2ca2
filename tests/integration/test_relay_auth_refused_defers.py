"""Issue #10 §4: a relay answering 535 5.7.8 to our login (a wrong password) is the
route's trouble, not the messages': everything is deferred, nothing bounced, and Volley
says it on stderr once (not once per message).  Fixing the password file and sending
SIGHUP lets the queued mail go."""

from __future__ import annotations

import signal
from pathlib import Path

from tests.support.internet import message
from tests.support.net import wait_for
from tests.support.receiver import self_signed_context


def test_a_wrong_password_defers_loudly_until_fixed(net, volley, tmp_path: Path) -> None:
    context, _ = self_signed_context("smtp.relay.test", tmp_path)
    relay = net.relay("smtp.relay.test", tls_context=context, users={"volley-user": "right-pw"})
    password_file = tmp_path / "pw"
    password_file.write_text("wrong-pw\n")
    v = volley(
        workers=1,
        config={
            "routes": {
                "default": {
                    "relay": f"smtp.relay.test:{relay.port}",
                    "auth": {"user": "volley-user", "password_file": str(password_file)},
                }
            }
        },
    )
    for i in range(3):
        v.drop(message("news@sender.test", [f"u{i}@dest.test"], seq=i))
    wait_for(lambda: v.count("deferred") >= 3, timeout=30, message=lambda: v.log())
    texts = {d["text"] for d in v.events("deferred")}
    assert texts == {
        f"authentication failed during auth: smtp.relay.test[{relay.ip}]: AUTH PLAIN as"
        " 'volley-user' refused: 535 5.7.8 Authentication credentials invalid"
    }
    assert {d["enhanced"] for d in v.events("deferred")} == {"4.7.8"}
    assert v.count("bounced") == 0 and relay.messages == []
    alarm = f"volley: relay smtp.relay.test:{relay.port}: AUTH PLAIN as 'volley-user' refused"
    wait_for(lambda: alarm in v.text_output(), timeout=10, message=v.text_output)
    assert v.text_output().count(alarm) == 1  # retried every 300 ms, said once per 5 min

    password_file.write_text("right-pw\n")
    assert v.proc is not None
    v.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: len(relay.messages) == 3, timeout=30, message=lambda: f"{relay!r} {v.log()}")
    assert {m.auth_user for m in relay.messages} == {"volley-user"}
    assert v.stop() == 0
    for where in (v.log_path, v.output):
        assert "wrong-pw" not in where.read_text() and "right-pw" not in where.read_text()
