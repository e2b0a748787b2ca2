"""Issue #9: a second `volley run` on a spool in use exits at once, naming the spool and
the pid that holds it (it once printed "running 2 workers" while its workers waited
forever on the shard locks, and Ctrl-C then took a minute)."""

from __future__ import annotations

import time

from tests.support.internet import message
from tests.support.net import wait_for


def test_a_second_instance_on_a_busy_spool_is_refused_at_once(net, volley) -> None:
    (rx,) = net.domain("d.test")
    v = volley(workers=2)
    started = time.monotonic()
    second = v.cli("run", timeout=30)
    took = time.monotonic() - started
    assert second.returncode == 1, second.stderr
    assert f"spool {v.spool} is in use by pid {v.proc.pid}" in second.stderr
    assert "running" not in second.stderr and "Traceback" not in second.stderr
    assert took < 10, took
    assert (v.spool / "volley.pid").read_text().strip() == str(v.proc.pid)
    v.drop(message("news@sender.test", ["a@d.test"]))  # the first one goes on
    wait_for(lambda: rx.messages, timeout=20, message=v.log)
    assert v.stop() == 0
