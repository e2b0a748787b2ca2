"""`volley-sendmail -bs`: an SMTP dialogue over the process's stdin/stdout, one command
and its reply at a time as a client does, two messages in one session; each accepted
message is delivered through the real `volley run`."""

from __future__ import annotations

import subprocess

from tests.support.net import wait_for
from tests.support.sendmail import SENDMAIL


class Client:
    """A line-at-a-time SMTP client on the command's pipes."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdin is not None and proc.stdout is not None
        self.stdin, self.stdout = proc.stdin, proc.stdout

    def reply(self) -> bytes:
        lines = [self.stdout.readline()]
        while lines[-1][3:4] == b"-":
            lines.append(self.stdout.readline())
        return b"".join(lines)

    def send(self, *lines: bytes) -> bytes:
        for line in lines:
            self.stdin.write(line + b"\r\n")
        self.stdin.flush()
        return self.reply()


def test_bs_dialogue_queues_each_message(net, volley) -> None:
    x = net.domain("x.test")[0]
    v = volley()
    with subprocess.Popen(
        [SENDMAIL, "-bs", "-C", str(v.config_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as proc:
        c = Client(proc)
        assert c.reply().startswith(b"220 volley.test ESMTP")
        ehlo = c.send(b"EHLO client.example")
        assert b"250-PIPELINING" in ehlo and b"250 ENHANCEDSTATUSCODES" in ehlo
        names = []
        for n in (1, 2):
            assert c.send(b"MAIL FROM:<app@sender.test>").startswith(b"250 2.1.0")
            assert c.send(b"RCPT TO:<user%d@x.test>" % n).startswith(b"250 2.1.5")
            assert c.send(b"RCPT TO:<not an address>").startswith(b"553 5.1.3")
            assert c.send(b"DATA").startswith(b"354")
            done = c.send(
                b"From: app@sender.test",
                b"Subject: message %d" % n,
                b"",
                b"..a line that starts with a dot",
                b".",
            )
            assert done.startswith(b"250 2.0.0 Ok: queued as sendmail-"), done
            names.append(done.split()[-1].decode())
        assert c.send(b"RSET") == b"250 2.0.0 Ok\r\n"
        assert c.send(b"QUIT") == b"221 2.0.0 Bye\r\n"
        assert proc.wait(10) == 0
    wait_for(lambda: len(x.messages) == 2, timeout=30, message=v.text_output)
    assert sorted(m.rcpt_tos for m in x.messages) == [("user1@x.test",), ("user2@x.test",)]
    for m in x.messages:
        assert m.mail_from == "app@sender.test"
        assert b"\r\n\r\n.a line that starts with a dot\r\n" in m.data
    assert sorted(r["drop"] for r in v.events("received")) == sorted(names)
    assert v.stop() == 0
