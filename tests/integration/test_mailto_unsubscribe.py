"""RFC 2369/8058 `mailto:` unsubscribe through the listener: a reader's mail client sends
the message the List-Unsubscribe `mailto:` URI describes to Volley's bounce domain; the
token in its Subject (not its From) names the recipient, who is then suppressed for that
sender domain — the next message to them is not sent.  A forged token suppresses
nothing.  Both requests are logged."""

from __future__ import annotations

import re
import smtplib
import urllib.parse

from tests.support.crash import metric
from tests.support.internet import message
from tests.support.net import free_port, wait_for
from tests.support.submit import listening, port_of

MAILTO = "unsubscribe@bounces.sender.test"


def test_a_mailto_unsubscribe_suppresses_the_next_message(net, volley) -> None:
    x = net.domain("x.test")[0]
    config = listening(bounce_domains=["bounces.sender.test"])
    config["unsubscribe"] = {
        "listen": f"127.0.0.1:{free_port(['127.0.0.1'])}",
        "url_base": "https://unsub.sender.test",
        "mailto": MAILTO,
    }
    v = volley(config=config)
    v.drop(message("news@sender.test", ["reader@x.test"], seq=1))
    wait_for(lambda: len(x.messages) == 1, timeout=30, message=v.text_output)
    uri = re.search(rb"<mailto:([^>]+)>", x.messages[0].data)
    assert uri is not None
    address, _, query = uri.group(1).decode().partition("?")
    assert address == MAILTO
    subject = urllib.parse.parse_qs(query)["subject"][0]
    token = subject.split()[-1]

    def send(subject: str) -> None:
        # What a reader's mail client sends (from anywhere: bounce domains take mail from
        # anyone), here straight to the listener.
        mail = (
            f"From: Some One <anyone@else.test>\r\nTo: {MAILTO}\r\nSubject: {subject}\r\n\r\n\r\n"
        )
        with smtplib.SMTP("127.0.0.1", port_of(v)) as s:
            assert s.sendmail("anyone@else.test", [MAILTO], mail.encode()) == {}

    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    send(f"unsubscribe {forged}")
    send(subject)
    wait_for(lambda: v.count("unsubscribe_mail") == 2, timeout=30, message=v.text_output)
    wait_for(
        lambda: (
            "reader@x.test" in v.cli("suppress", "check", "reader@x.test").stdout
            and v.cli("suppress", "check", "reader@x.test").returncode == 0
        ),
        timeout=30,
        message=lambda: v.cli("suppress", "check", "reader@x.test").stdout + v.text_output(),
    )
    for result in ("forged", "unsubscribed"):  # the forged one added nothing
        wait_for(
            lambda r=result: (
                metric(v.metrics_port, "volley_unsubscribe_requests_total", result=r) == 1
            ),
            timeout=10,
        )
    listed = v.cli("suppress", "list").stdout
    assert "reader@x.test" in listed and "sender.test" in listed and "unsubscribe" in listed
    assert "anyone@else.test" not in listed  # the From decides nothing

    v.drop(message("news@sender.test", ["reader@x.test"], seq=2))
    wait_for(lambda: v.count("suppressed") == 1, timeout=30, message=v.text_output)
    (rec,) = v.events("suppressed")
    assert rec["rcpt"] == "reader@x.test" and rec["source"] == "unsubscribe"
    assert len(x.messages) == 1
    assert v.stop() == 0
