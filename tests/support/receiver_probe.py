"""A stdlib smtplib client for poking a test Receiver (the receiver's own tests use it).

Responsible for: the addresses, message and connection helper those tests share.
Not responsible for: the receiver itself (tests.support.receiver).
"""

from __future__ import annotations

import smtplib

from tests.support.receiver import Receiver

IP = "127.0.0.2"
IP2 = "127.0.0.3"
MSG = b"From: a@src.test\r\nSubject: hi\r\n\r\n.leading dot\r\nbody \xc3\xa9\r\n"


def reply_text(reply: str) -> tuple[int, bytes]:
    """A canned reply "250 2.0.0 text" as smtplib returns it: (250, b"2.0.0 text")."""
    code, text = reply.split(" ", 1)
    return int(code), text.encode()


def connect(receiver: Receiver, ip: str = IP) -> smtplib.SMTP:
    client = smtplib.SMTP(ip, receiver.port, local_hostname="client.test", timeout=10)
    client.ehlo()
    return client
