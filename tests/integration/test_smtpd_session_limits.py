"""Sessions a client cannot hog: at most max_connections_per_client at once from one
address outside relay_networks, counted over both workers (the supervisor keeps the
count; the kernel spreads one client's connections over the workers' sockets), with
trusted clients exempt; and a client that says nothing is cut off after idle_timeout
with 421 4.4.2."""

from __future__ import annotations

import contextlib
import time

from tests.support.crash import metric
from tests.support.net import wait_for
from tests.support.submit import RawSession, listening, port_of

LIMIT = 3


def stranger(port: int) -> RawSession:
    return RawSession(port, source="127.0.0.2")  # outside relay_networks


def test_per_client_limit_and_idle_cutoff(net, volley) -> None:
    v = volley(
        workers=2,
        config=listening(
            relay_networks=["127.0.0.1/32"], max_connections_per_client=LIMIT, idle_timeout="2s"
        ),
    )
    port = port_of(v)
    with contextlib.ExitStack() as stack:
        held = [stack.enter_context(stranger(port)) for _ in range(LIMIT)]
        for s in held:
            assert s.reply().startswith(b"220 ")
        over = stack.enter_context(stranger(port))
        assert (
            over.reply() == b"421 volley.test 4.7.0 Error: too many connections from 127.0.0.2\r\n"
        )
        assert over.closed()
        # Trusted clients are not counted: as many as they like.
        trusted = [stack.enter_context(RawSession(port)) for _ in range(LIMIT + 2)]
        for s in trusted:
            assert s.reply().startswith(b"220 ")
        # One stranger leaves: one more may come.
        assert held[0].cmd(b"QUIT").startswith(b"221")
        held[0].close()

        def admitted() -> bool:
            with stranger(port) as s:
                return s.reply().startswith(b"220 ")

        wait_for(admitted, timeout=10)

        # Idle: nothing sent since the greeting; cut off after idle_timeout, not before.
        start = time.monotonic()
        idle = stack.enter_context(RawSession(port))
        assert idle.reply().startswith(b"220 ")
        busy = stack.enter_context(RawSession(port))
        busy.reply()
        while time.monotonic() - start < 1.0:  # talks for a while: not idle
            assert busy.cmd(b"NOOP").startswith(b"250")
        assert idle.reply() == b"421 volley.test 4.4.2 Error: timeout exceeded\r\n"
        assert time.monotonic() - start >= 2.0
        assert idle.closed()
        assert busy.cmd(b"NOOP").startswith((b"250", b"421"))  # its own clock
    wait_for(
        lambda: (
            metric(v.metrics_port, "volley_smtpd_rejected_total", reason="connection_limit") == 1
        ),
        timeout=10,
    )
    assert (metric(v.metrics_port, "volley_smtpd_rejected_total", reason="timeout") or 0) >= 1
    assert v.stop() == 0
