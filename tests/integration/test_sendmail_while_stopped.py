"""volley-sendmail works while `volley run` is stopped: the drop waits in incoming/
(like Postfix's maildrop) and is delivered once Volley starts again."""

from __future__ import annotations

from tests.support.net import wait_for
from tests.support.sendmail import sendmail


def test_mail_waits_for_volley(net, volley) -> None:
    x = net.domain("x.test")[0]
    v = volley()
    assert v.stop() == 0  # the spool exists; nothing runs now
    got = sendmail(
        v.config_path, "-i", "late@x.test", stdin=b"From: app@sender.test\nSubject: s\n\nwaits\n"
    )
    assert got.returncode == 0, got.stderr
    [name] = v.incoming()
    assert name.startswith("sendmail-") and name.endswith(".eml")
    assert x.messages == []
    v.start()
    wait_for(lambda: len(x.messages) == 1, timeout=30, message=v.text_output)
    assert x.messages[0].rcpt_tos == ("late@x.test",)
    assert x.messages[0].data.endswith(b"\r\n\r\nwaits\r\n")
    wait_for(lambda: v.incoming() == [], timeout=10)
    assert [r["drop"] for r in v.events("received")] == [name]
    assert v.stop() == 0
