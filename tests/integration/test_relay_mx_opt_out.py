"""Issue #10 §4: with a default relay, `relay = "mx"` in a domain's table sends that domain
by MX again, and another domain's table can name a relay of its own — which gets none of
the default relay's credentials (a domain's table inherits nothing)."""

from __future__ import annotations

from pathlib import Path

from tests.support.internet import message
from tests.support.net import wait_for
from tests.support.receiver import self_signed_context


def test_default_relay_with_an_mx_opt_out_and_a_second_relay(net, volley, tmp_path: Path) -> None:
    context, _ = self_signed_context("smtp.relay.test", tmp_path)
    default = net.relay("smtp.relay.test", tls_context=context, users={"u": "default-pw"})
    second = net.relay("smtp.second.test", tls_context=context, users={"u": "default-pw"})
    (direct_mx,) = net.domain("direct.test")
    password_file = tmp_path / "pw"
    password_file.write_text("default-pw")
    v = volley(
        config={
            "routes": {
                "default": {
                    "relay": f"smtp.relay.test:{default.port}",
                    "auth": {"user": "u", "password_file": str(password_file)},
                },
                "direct.test": {"relay": "mx"},
                "second.test": {"relay": f"smtp.second.test:{second.port}"},
            }
        }
    )
    v.drop(message("news@sender.test", ["a@any.test", "b@direct.test", "c@second.test"]))
    wait_for(
        lambda: default.messages and direct_mx.messages and second.messages,
        timeout=30,
        message=lambda: f"{default!r} {direct_mx!r} {second!r}\n{v.log()}",
    )
    assert [(m.rcpt_tos, m.auth_user) for m in default.messages] == [(("a@any.test",), "u")]
    assert [m.rcpt_tos for m in direct_mx.messages] == [("b@direct.test",)]
    assert [(m.rcpt_tos, m.auth_user) for m in second.messages] == [(("c@second.test",), "")]
    assert second.auth_commands == 0  # the default relay's password stayed with it
    assert net.dns.queries(qtype="MX") == net.dns.queries("direct.test", "MX") >= 1
    assert v.stop() == 0
