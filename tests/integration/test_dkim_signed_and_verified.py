"""Issue #12 §1: mail whose From domain has a `[dkim."domain"]` table leaves signed once
at intake, with RSA and Ed25519 (also_sign), and an independent verifier (mailauth,
asking the test DNS for the published keys) passes both signatures — also on
a message that was deferred once and sent again from the stored, signed bytes.  Mail of
other domains is left unsigned."""

from __future__ import annotations

from pathlib import Path

from engine.auth.dkim import load_key
from engine.auth.keygen import keygen
from tests.support.dkim_check import mailauth_verify, publish_key
from tests.support.internet import message
from tests.support.net import wait_for


def test_signed_at_intake_verifies_after_a_retry(net, volley, tmp_path: Path) -> None:
    rsa_path = keygen("sender.test", "rsa2026", "rsa", 2048, tmp_path)
    ed_path = keygen("sender.test", "ed2026", "ed25519", 0, tmp_path)
    for path, selector in ((rsa_path, "rsa2026"), (ed_path, "ed2026")):
        publish_key(net.dns, load_key(path, "sender.test", selector))
    (rx,) = net.domain("dest.test")
    v = volley(
        workers=1,
        config={
            "dkim": {
                "sender.test": {
                    "selector": "rsa2026",
                    "key": str(rsa_path),
                    "also_sign": [{"selector": "ed2026", "key": str(ed_path)}],
                }
            }
        },
    )
    # "flaky1-": the receiver answers 451 once, then accepts (tests.support.receiver).
    v.drop(message("news@sender.test", ["flaky1-ann@dest.test"], seq=1))
    v.drop(message("news@other.test", ["bob@dest.test"], seq=2))
    wait_for(lambda: rx.delivered_to("flaky1-ann@dest.test"), timeout=30, message=v.log)
    wait_for(lambda: rx.delivered_to("bob@dest.test"), timeout=30, message=v.log)
    assert [d["attempt"] for d in v.events("deferred")] == [1]

    (signed,) = rx.delivered_to("flaky1-ann@dest.test")
    assert signed.data.count(b"DKIM-Signature:") == 2  # signed once, not again on retry
    results = mailauth_verify(signed.data, net.dns)
    assert {(r.selector, r.algorithm, r.result) for r in results} == {
        ("rsa2026", "rsa-sha256", "pass"),
        ("ed2026", "ed25519-sha256", "pass"),
    }, results
    (unsigned,) = rx.delivered_to("bob@dest.test")
    assert b"DKIM-Signature:" not in unsigned.data
    # The independent verifier does fail a change: the check is not vacuous.
    tampered = signed.data.replace(b"Hello number 1", b"Hello number 9")
    assert [r.result for r in mailauth_verify(tampered, net.dns)] == ["neutral", "neutral"]
    assert v.stop() == 0
