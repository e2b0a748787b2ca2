"""Bad drops move to rejected/ with a reason beside them; good ones still flow."""

from __future__ import annotations

import os

from tests.support.internet import message
from tests.support.net import wait_for


def test_rejected_drops_have_reasons(net, volley) -> None:
    (rx,) = net.domain("ok.test")
    v = volley(workers=2, config={"spool": {"max_message_size": 10_000}})
    incoming = v.spool / "incoming"
    bad = {
        "garbage.eml": b"\x00\x01\x02binary\xff\xfe" * 10,
        "no-rcpt.eml": b"From: a@sender.test\r\nSubject: x\r\n\r\nbody\r\n",
        "too big.eml": message("a@sender.test", ["b@ok.test"], body="x" * 20_000),
        "bad-addr.eml": b"From: a@sender.test\r\nTo: <foo@@bar>\r\n\r\nbody\r\n",
        "sch\u00f6n.eml": b"",
    }
    for name, data in bad.items():
        v.drop(data, name=name)
    os.symlink("/etc/passwd", incoming / "link.eml")
    v.drop(message("a@sender.test", ["fine@ok.test"]))
    rejected = v.spool / "rejected"
    names = [*bad, "link.eml"]
    wait_for(  # the .reason file is written right after the move: wait for it, not the move
        lambda: all((rejected / f"{n}.reason").exists() for n in names) and rx.messages,
        timeout=30,
        message=lambda: f"{sorted(os.listdir(rejected))} {v.log()}",
    )
    reasons = {n: (rejected / f"{n}.reason").read_text() for n in names}
    assert "recipient" in reasons["no-rcpt.eml"].lower()
    assert "10000" in reasons["too big.eml"] or "10,000" in reasons["too big.eml"]
    assert "symbolic link" in reasons["link.eml"].lower()
    assert (rejected / "link.eml").is_symlink()
    assert all(r.strip() for r in reasons.values())
    assert v.incoming() == []
    assert v.count("rejected") == len(names)
    assert [m.rcpt_tos for m in rx.messages] == [("fine@ok.test",)]
    assert v.stop() == 0
