"""Issue #10 §4: with `[routes.default]`, all mail goes through one smarthost that wants
STARTTLS before anything and AUTH before MAIL (like SES on 587).  The relay receives every
message, encrypted, from the configured user; no recipient domain's MX is ever looked up
(one of them does not even exist in DNS); the relay's name is looked up by address only;
and the password appears nowhere Volley writes."""

from __future__ import annotations

from pathlib import Path

from tests.support.internet import message
from tests.support.net import wait_for
from tests.support.receiver import self_signed_context

PASSWORD = "Sup3r secret-relay pw"


def test_all_mail_goes_through_the_relay_over_starttls_with_auth(
    net, volley, tmp_path: Path
) -> None:
    context, _ = self_signed_context("smtp.relay.test", tmp_path)
    relay = net.relay(
        "smtp.relay.test",
        tls_context=context,
        require_starttls=True,  # "530 Must issue a STARTTLS command first" otherwise
        users={"volley-user": PASSWORD},
    )
    (mx_a,) = net.domain("dest-a.test")  # published, but must not be used
    (mx_b,) = net.domain("dest-b.test")
    password_file = tmp_path / "relay.password"
    password_file.write_text(PASSWORD + "\n")
    v = volley(
        config={
            "routes": {
                "default": {
                    "relay": f"smtp.relay.test:{relay.port}",
                    "auth": {"user": "volley-user", "password_file": str(password_file)},
                }
            }
        }
    )
    rcpts = ["ann@dest-a.test", "bob@dest-b.test", "cy@nowhere-in-dns.test"]
    for i, rcpt in enumerate(rcpts):
        v.drop(message("news@sender.test", [rcpt], seq=i))
    wait_for(
        lambda: len(relay.messages) == 3,
        timeout=30,
        message=lambda: f"{relay!r}\n{v.log()}\n{v.text_output()}",
    )
    for m in relay.messages:
        assert (m.auth_user, m.tls) == ("volley-user", True), m
    assert sorted(r for m in relay.messages for r in m.rcpt_tos) == sorted(rcpts)
    assert [(user, ok) for _, user, ok in relay.logins] == [("volley-user", True)] * len(
        relay.logins
    )
    assert mx_a.messages == [] and mx_b.messages == []
    assert mx_a.connections_total == 0 and mx_b.connections_total == 0
    assert net.dns.queries(qtype="MX") == 0  # never an MX lookup
    assert net.dns.queries("smtp.relay.test", "A") >= 1
    wait_for(lambda: v.count("delivered") == 3, timeout=10)
    assert {(d["mx"], d["ip"]) for d in v.events("delivered")} == {("smtp.relay.test", relay.ip)}
    assert v.stop() == 0
    for where in (v.log_path, v.output, v.config_path):
        assert PASSWORD not in where.read_text(errors="replace"), where
