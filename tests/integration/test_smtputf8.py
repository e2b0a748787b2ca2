"""A UTF-8 address meets a server without SMTPUTF8: bounced with the reason, not mangled."""

from __future__ import annotations

from tests.support.internet import message
from tests.support.net import wait_for


def test_utf8_recipient_without_smtputf8_bounces(net, volley) -> None:
    (old,) = net.domain("old.test", smtputf8=False)
    (new,) = net.domain("new.test", smtputf8=True)
    v = volley(workers=1)
    v.drop(message("news@sender.test", ["jürgen@old.test"]))
    v.drop(message("news@sender.test", ["jürgen@new.test"]))
    wait_for(
        lambda: v.count("bounced") == 1 and new.messages, timeout=20, message=lambda: f"{v.log()}"
    )
    (b,) = v.events("bounced")
    assert b["rcpt"] == "jürgen@old.test" and b["enhanced"] == "5.6.7" and "SMTPUTF8" in b["text"]
    assert old.messages == []
    assert new.messages[0].rcpt_tos == ("jürgen@new.test",)
    assert "SMTPUTF8" in [o.upper() for o in new.messages[0].mail_options]
    assert v.stop() == 0
