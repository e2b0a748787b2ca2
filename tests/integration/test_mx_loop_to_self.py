"""Issue #11: a destination whose best MX host is Volley's own SMTP listener (the address
and port of `smtpd.listen`) is a mail loop: bounced with 5.4.6 ("mail for X loops back to
myself", as Postfix says), no connection made.  A domain whose MX hosts list us after a
better host delivers to that host."""

from __future__ import annotations

from tests.support.internet import message
from tests.support.net import wait_for


def test_mail_to_our_own_listener_bounces_as_a_loop(net, volley) -> None:
    net.publish("loop.test", ["127.0.0.1"])  # our listener is on 127.0.0.1, port smtp.port
    (better,) = [net.receiver()]
    net.publish("backup-is-us.test", [better.ip, "127.0.0.1"])
    v = volley(workers=1, config={"smtpd": {"listen": [f"127.0.0.1:{net.port}"]}})
    v.drop(message("news@sender.test", ["a@loop.test"]))
    v.drop(message("news@sender.test", ["b@backup-is-us.test"], seq=2))
    wait_for(lambda: v.count("bounced") == 1, timeout=20, message=v.log)
    (b,) = v.events("bounced")
    assert (b["rcpt"], b["code"], b["enhanced"]) == ("a@loop.test", 554, "5.4.6")
    assert "loops back to myself" in b["text"]
    wait_for(lambda: better.delivered_to("b@backup-is-us.test"), timeout=20, message=v.log)
    assert v.count("deferred") == 0
    assert v.stop() == 0
