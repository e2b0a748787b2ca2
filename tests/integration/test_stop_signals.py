"""Issue #9: Ctrl-C says what it does, and a second one stops at once.

SIGINT/SIGTERM drain (in-flight transactions finish, up to shutdown.drain_timeout) and say
so; a second SIGINT stops at once and the mail in flight stays queued (sent after the
next start); the supervisor says when it stopped.  Once this took ~60 s, silently.
"""

from __future__ import annotations

import signal
import time

from tests.support.crash import metric, restart
from tests.support.internet import message
from tests.support.net import wait_for

STALL = "stall-ann@slow.test"


def test_a_second_sigint_stops_at_once_and_the_mail_stays_queued(net, volley) -> None:
    (rx,) = net.domain("slow.test")
    v = volley(
        workers=1,
        config={"smtp": {"timeouts": {"rcpt": "120s"}}, "shutdown": {"drain_timeout": "60s"}},
    )
    v.drop(message("news@sender.test", [STALL]))
    wait_for(lambda: rx.stalled_count == 1, timeout=20, message=v.log)
    # What the supervisor knows of the workers comes with their 250 ms metric flushes.
    wait_for(
        lambda: metric(v.metrics_port, "volley_queue_entries", state="inflight") == 1,
        timeout=10,
    )
    v.proc.send_signal(signal.SIGINT)
    wait_for(lambda: "SIGINT: stopping" in v.text_output(), timeout=10, message=v.text_output)
    assert "1 entries in flight" in v.text_output()
    assert v.proc.poll() is None  # draining: the stalled transaction may still finish
    asked = time.monotonic()
    v.proc.send_signal(signal.SIGINT)
    assert v.proc.wait(20) == 0
    assert time.monotonic() - asked < 10  # not the 60 s drain
    out = v.text_output()
    assert "SIGINT again: stopping at once" in out and "volley: stopped (" in out
    assert len(v.queued()) == 1  # still queued, not lost

    rx.release_stalled()
    restart(v)
    wait_for(lambda: rx.delivered_to(STALL), timeout=30, message=v.log)
    assert v.stop() == 0


def test_sighup_does_not_kill_and_sigterm_says_stopped(net, volley) -> None:
    net.domain("d.test")
    v = volley(workers=1)
    v.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "SIGHUP: configuration reloaded" in v.text_output(), timeout=10)
    assert v.proc.poll() is None
    assert v.stop() == 0
    out = v.text_output()
    assert "SIGTERM: stopping" in out and "volley: stopped (" in out
