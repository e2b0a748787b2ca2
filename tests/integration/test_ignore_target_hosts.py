"""Issue #11: by default Volley never connects to addresses that are never a real remote
MX (smtp.ignore_target_hosts: 127.0.0.0/8, ::1, 0.0.0.0/8, link-local, multicast), as
Exim's ignore_target_hosts; MX targets that are not host names (an IP literal,
localhost) are skipped.  A domain left with no usable MX bounces (5.4.4) naming why;
nothing reaches the receivers."""

from __future__ import annotations

from tests.support.internet import message
from tests.support.net import wait_for


def test_default_rules_refuse_loopback_and_bad_mx_targets(net, volley) -> None:
    (loopback,) = net.domain("loopback.test")  # a receiver on 127.0.0.x: ignored by default
    net.dns.add_mx("literal.test", [(10, "192.0.2.1")])
    net.dns.add_mx("localhost.test", [(10, "localhost")])
    v = volley(workers=1, config={"smtp": {"ignore_target_hosts": ["127.0.0.0/8", "::1/128"]}})
    for i, domain in enumerate(("loopback.test", "literal.test", "localhost.test")):
        v.drop(message("news@sender.test", [f"a@{domain}"], seq=i))
    wait_for(lambda: v.count("bounced") == 3, timeout=20, message=v.log)
    why = {e["rcpt"]: (e["enhanced"], e["text"]) for e in v.events("bounced")}
    assert why["a@loopback.test"][0] == "5.4.4"
    assert "ignore_target_hosts" in why["a@loopback.test"][1]
    assert "an IP address, not a host name" in why["a@literal.test"][1]
    assert "(localhost)" in why["a@localhost.test"][1]
    assert loopback.connections_total == 0 and not loopback.messages
    assert v.stop() == 0
