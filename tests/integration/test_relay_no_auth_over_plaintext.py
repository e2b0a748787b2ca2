"""Issue #10 §4: AUTH never goes over an unencrypted connection unless `tls = "disabled"`
is written.  A relay that offers AUTH but no STARTTLS gets no AUTH line at all, and no
mail: every message is deferred with the reason (not bounced, not silently sent in
clear), whether the route says tls = "required" or "opportunistic"."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.internet import message
from tests.support.net import wait_for


@pytest.mark.parametrize(
    ("tls", "reason"),
    [
        ("required", "TLS failure during starttls: smtp.relay.test[{ip}]: STARTTLS not offered"),
        (
            "opportunistic",
            "TLS failure during auth: smtp.relay.test[{ip}]: no TLS on this connection, and"
            ' AUTH is never sent over an unencrypted one (only routes.default.tls = "disabled"'
            " allows it)",
        ),
    ],
)
def test_no_starttls_means_no_auth_and_a_deferral(
    net, volley, tmp_path: Path, tls: str, reason: str
) -> None:
    # A careless relay: AUTH offered in plaintext (aiosmtpd's auth_require_tls=False).
    relay = net.relay("smtp.relay.test", users={"volley-user": "pw"}, auth_require_tls=False)
    password_file = tmp_path / "pw"
    password_file.write_text("pw")
    v = volley(
        config={
            "routes": {
                "default": {
                    "relay": f"smtp.relay.test:{relay.port}",
                    "tls": tls,
                    "auth": {"user": "volley-user", "password_file": str(password_file)},
                }
            }
        }
    )
    v.drop(message("news@sender.test", ["ann@dest.test"], seq=1))
    v.drop(message("news@sender.test", ["bob@dest.test"], seq=2))
    wait_for(lambda: v.count("deferred") >= 2, timeout=30, message=lambda: v.log())
    deferred = list(v.events("deferred"))
    assert {d["text"] for d in deferred} == {reason.format(ip=relay.ip)}
    assert {(d["code"], d["enhanced"]) for d in deferred} == {(451, "4.7.5")}
    assert v.count("bounced") == 0 and v.count("delivered") == 0
    assert relay.connections_total >= 1  # it was asked...
    assert relay.auth_commands == 0 and relay.logins == []  # ...but never given a password
    assert relay.messages == []
    assert v.stop() == 0
