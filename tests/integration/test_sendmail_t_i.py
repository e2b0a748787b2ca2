"""`volley-sendmail -t -i` through the real `volley run` to the mini internet's receivers:
recipients from To/Cc/Bcc plus the arguments, Bcc removed, -f/-F, a lone "." kept,
LF input, Date and Message-ID added by intake."""

from __future__ import annotations

from email import message_from_bytes, policy

from tests.support.net import wait_for
from tests.support.sendmail import sendmail

MESSAGE = (
    b"To: Alice <alice@x.test>\n"
    b"Cc: carol@x.test\n"
    b"Bcc: hidden@z.test\n"
    b"Subject: monthly report\n"
    b"\n"
    b"first line\n"
    b".\n"  # -i: a lone dot is content, not the end
    b".leading dot\n"
    b"last line\n"
)


def test_t_i_delivers_to_header_and_argument_recipients(net, volley) -> None:
    x, y, z = (net.domain(d)[0] for d in ("x.test", "y.test", "z.test"))
    v = volley()
    got = sendmail(
        v.config_path,
        "-t",
        "-i",
        "-F",
        "Reports Robot",
        "-f",
        "bounces@sender.test",
        "extra@y.test",
        stdin=MESSAGE,
    )
    assert got.returncode == 0, got.stderr
    assert got.stdout == b"" and got.stderr == b""
    wait_for(
        lambda: len(x.messages) + len(y.messages) + len(z.messages) == 3,
        timeout=30,
        message=lambda: f"{x.messages} {y.messages} {z.messages}\n{v.text_output()}",
    )
    [to_x], [to_y], [to_z] = x.messages, y.messages, z.messages
    assert sorted(to_x.rcpt_tos) == ["alice@x.test", "carol@x.test"]
    assert to_y.rcpt_tos == ("extra@y.test",) and to_z.rcpt_tos == ("hidden@z.test",)
    for m in (to_x, to_y, to_z):
        assert m.mail_from == "bounces@sender.test"
        assert m.data == to_x.data  # one message, the same bytes to everyone
    data = to_x.data
    assert b"Bcc" not in data and b"hidden" not in data
    assert b"\r\nfirst line\r\n.\r\n.leading dot\r\nlast line\r\n" in data
    assert b"\n" not in data.replace(b"\r\n", b"")  # CRLF throughout
    msg = message_from_bytes(data, policy=policy.default)
    assert msg["From"].addresses[0].display_name == "Reports Robot"
    assert msg["From"].addresses[0].addr_spec == "bounces@sender.test"
    assert msg["Date"] is not None  # added by intake, as for every drop
    msgid = msg["Message-ID"]
    assert msgid is not None and msgid.endswith("@volley.test>")
    received = list(v.events("received"))
    assert sorted(r["rcpt"] for r in received) == [
        "alice@x.test",
        "carol@x.test",
        "extra@y.test",
        "hidden@z.test",
    ]
    assert {r["msgid"] for r in received} == {msgid}
    assert all(r["drop"].startswith("sendmail-") for r in received)
    wait_for(lambda: v.count("delivered") == 4, timeout=10)
    assert v.incoming() == []
    assert v.stop() == 0
