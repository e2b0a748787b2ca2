"""bench.backpressure_sink over real sockets on loopback: it answers what the Decider
says, keeps replies in order for a pipelining client even when one is held, refuses a DATA
with no accepted recipient, and reports what it did when stopped."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.backpressure_mix import Decider, parse_mix
from bench.backpressure_sink import BackpressureSinks
from tests.support.net import free_port

IP = "127.0.0.1"
MIX = "451@rcpt=30%,550@rcpt=20%,slow=40%:0.3s"
SEED = 7


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[tuple[BackpressureSinks, int]]:
    port = free_port([IP])
    s = BackpressureSinks([IP], port, parse_mix(MIX), SEED, tmp_path).start()
    yield s, port
    s.stop()


def pick(kind: str) -> str:
    """A recipient whose first RCPT the mix answers as `kind` ("ok", "451", "550"),
    and whose end-of-data reply is slow when kind is "slow"."""
    d = Decider(parse_mix(MIX), SEED)
    for i in range(1000):
        r = f"u{i}@d.test"
        reply = d.rcpt(r, 1)
        slow = d.data(r, 1)[1] > 0
        code = reply[:3].decode() if reply else "ok"
        if kind == "slow" and code == "ok" and slow:
            return r
        if kind != "slow" and code == kind and not slow:
            return r
    raise AssertionError(f"no {kind} recipient in 1000")


def read_replies(sock: socket.socket, n: int, timeout: float = 5.0) -> list[str]:
    sock.settimeout(timeout)
    data = b""
    while data.count(b"\r\n") < n:
        chunk = sock.recv(65536)
        assert chunk, f"closed after {data!r}"
        data += chunk
    return [line[:3] for line in data.decode().split("\r\n")[:n]]


def test_pipelined_replies_keep_their_order_behind_a_slow_one(
    sink: tuple[BackpressureSinks, int],
) -> None:
    s, port = sink
    slow, ok, bad, later = pick("slow"), pick("ok"), pick("550"), pick("451")
    with socket.create_connection((IP, port)) as c:
        assert read_replies(c, 1) == ["220"]
        c.sendall(b"EHLO client.test\r\n")
        c.recv(65536)
        c.sendall(b"MAIL FROM:<s@a.test>\r\nRCPT TO:<%s>\r\nDATA\r\n" % slow.encode())
        assert read_replies(c, 3) == ["250", "250", "354"]
        t0 = time.monotonic()
        # The slow one's content, then a transaction whose RCPTs are all refused: its DATA
        # gets 554 (RFC 2920), and every reply waits behind the held one.
        c.sendall(
            b"hello\r\n.\r\nMAIL FROM:<s@a.test>\r\nRCPT TO:<%s>\r\nRCPT TO:<%s>\r\nDATA\r\n"
            % (bad.encode(), later.encode())
        )
        assert read_replies(c, 5) == ["250", "250", "550", "451", "554"]
        assert time.monotonic() - t0 >= 0.29
        c.sendall(b"RSET\r\nMAIL FROM:<s@a.test>\r\nRCPT TO:<%s>\r\nDATA\r\n" % ok.encode())
        assert read_replies(c, 4) == ["250", "250", "250", "354"]
        c.sendall(b"hi\r\n.\r\nQUIT\r\n")
        assert read_replies(c, 2) == ["250", "221"]
    counts = s.stop()
    assert counts["accepted"] == 2 and counts["accepted_twice"] == 0
    assert counts["refusals"] == {"451@rcpt": 1, "550@rcpt": 1}
    assert counts["slow_replies"] == 1 and counts["transactions"] == 3
    assert len(counts["accept_times"]) == 2


def test_a_connection_refused_gets_the_421_and_is_closed(tmp_path: Path) -> None:
    port = free_port([IP])
    with BackpressureSinks([IP], port, parse_mix("421@connect=100%"), SEED, tmp_path) as s:
        with socket.create_connection((IP, port)) as c:
            c.settimeout(5)
            data = b""
            while chunk := c.recv(4096):
                data += chunk
        assert data.startswith(b"421 4.7.0")
        counts = s.stop()
    assert counts["connections"] == 1 and counts["refused_connections"] == 1
