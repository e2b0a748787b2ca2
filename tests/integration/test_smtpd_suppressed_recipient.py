"""Issue #12 §3 on the SMTP path: a submission to an address on the suppression list is
answered exactly as any other (250 to RCPT, 250 to the message: a client cannot probe
the list), the other recipients are delivered, the suppressed one is never sent, and a
`suppressed` record says which entry caused it and where the message came from."""

from __future__ import annotations

import smtplib

from tests.support.internet import message
from tests.support.net import wait_for
from tests.support.submit import listening, port_of


def test_a_suppressed_rcpt_is_accepted_but_never_sent(net, volley) -> None:
    x = net.domain("x.test")[0]
    v = volley(workers=2, config=listening())
    got = v.cli("suppress", "add", "gone@x.test", "--reason", "hard bounce last week")
    assert got.returncode == 0, got.stderr
    with smtplib.SMTP("127.0.0.1", port_of(v)) as s:
        s.ehlo()
        assert s.mail("news@sender.test") == (250, b"2.1.0 Ok")
        assert s.rcpt("gone@x.test")[0] == 250  # the same answer as for anyone else
        assert s.rcpt("ok@x.test")[0] == 250
        code, _ = s.data(message("news@sender.test", ["gone@x.test", "ok@x.test"], seq=1))
        assert code == 250
        # All recipients suppressed: still a 250, and nothing queued.
        assert (
            s.sendmail(
                "news@sender.test",
                ["gone@x.test"],
                message("n@sender.test", ["gone@x.test"], seq=2),
            )
            == {}
        )
    wait_for(
        lambda: v.count("delivered") == 1 and v.count("suppressed") == 2,
        timeout=30,
        message=lambda: f"{v.log()}\n{v.text_output()}",
    )
    assert [list(m.rcpt_tos) for m in x.messages] == [["ok@x.test"]]
    records = list(v.events("suppressed"))
    assert {(r["rcpt"], r["entry"], r["via"], r["client"]) for r in records} == {
        ("gone@x.test", "gone@x.test", "smtp", "127.0.0.1")
    }
    assert all(r["reason"] == "hard bounce last week" for r in records)
    assert [r["rcpt"] for r in v.events("received")] == ["ok@x.test"]
    wait_for(lambda: v.queued() == [], timeout=10)
    assert v.stop() == 0
