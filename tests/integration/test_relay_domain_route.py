"""Issue #10 §4: `[routes."relayed.test"]` sends that one domain's mail through a relay
(a corporate gateway, say) while every other domain is delivered by MX as before; the
relayed domain's own MX hosts are neither looked up nor used."""

from __future__ import annotations

from tests.support.internet import message
from tests.support.net import wait_for


def test_only_the_routed_domain_goes_through_the_relay(net, volley) -> None:
    relay = net.relay("gateway.corp.test")
    (relayed_mx,) = net.domain("relayed.test")
    (dest_mx,) = net.domain("dest.test")
    (other_mx,) = net.domain("other.test")
    v = volley(config={"routes": {"relayed.test": {"relay": f"gateway.corp.test:{relay.port}"}}})
    v.drop(
        message(
            "news@sender.test", ["a@relayed.test", "b@relayed.test", "c@dest.test", "d@other.test"]
        )
    )
    wait_for(
        lambda: relay.messages and dest_mx.messages and other_mx.messages,
        timeout=30,
        message=lambda: f"{relay!r} {dest_mx!r} {other_mx!r}\n{v.log()}",
    )
    (via_relay,) = relay.messages
    assert via_relay.rcpt_tos == ("a@relayed.test", "b@relayed.test")
    assert [m.rcpt_tos for m in dest_mx.messages] == [("c@dest.test",)]
    assert [m.rcpt_tos for m in other_mx.messages] == [("d@other.test",)]
    assert relayed_mx.connections_total == 0
    assert net.dns.queries("relayed.test", "MX") == 0
    assert net.dns.queries("dest.test", "MX") >= 1 and net.dns.queries("other.test", "MX") >= 1
    wait_for(lambda: v.count("delivered") == 4, timeout=10)
    mx_of = {d["rcpt"]: d["mx"] for d in v.events("delivered")}
    assert mx_of == {
        "a@relayed.test": "gateway.corp.test",
        "b@relayed.test": "gateway.corp.test",
        "c@dest.test": "mx1.dest.test",
        "d@other.test": "mx1.other.test",
    }
    assert v.stop() == 0
