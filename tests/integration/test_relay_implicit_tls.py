"""Issue #10 §4: `tls = "implicit"` talks TLS from the first byte (RFC 8314, port 465, the
other way SES and most providers take submissions), then AUTH inside it.  The relay is
written as an address, so nothing is looked up in DNS at all."""

from __future__ import annotations

from pathlib import Path

from tests.support.internet import message
from tests.support.net import wait_for
from tests.support.receiver import self_signed_context


def test_implicit_tls_relay_by_address(net, volley, tmp_path: Path) -> None:
    context, _ = self_signed_context("relay465.test", tmp_path)
    relay = net.relay(implicit_tls_context=context, users={"smtp-user": "pw465"})
    password_file = tmp_path / "pw"
    password_file.write_text("pw465\n")
    v = volley(
        config={
            "routes": {
                "default": {
                    "relay": f"[{relay.ip}]:{relay.port}",
                    "tls": "implicit",
                    "auth": {"user": "smtp-user", "password_file": str(password_file)},
                }
            }
        }
    )
    for i in range(5):
        v.drop(message("news@sender.test", [f"u{i}@dest{i % 2}.test"], seq=i))
    wait_for(lambda: len(relay.messages) == 5, timeout=30, message=lambda: f"{relay!r} {v.log()}")
    assert all((m.tls, m.auth_user) == (True, "smtp-user") for m in relay.messages)
    assert net.dns.queries() == 0  # an address: no MX, no A, nothing
    wait_for(lambda: v.count("delivered") == 5, timeout=10)
    assert {d["ip"] for d in v.events("delivered")} == {relay.ip}
    assert v.stop() == 0
