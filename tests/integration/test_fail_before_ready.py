"""Issue #14, finding 1: a session that never becomes ready is a connection failure.

MX hosts that close on accept, never greet, drop the connection after EHLO, or send an
EHLO line over the reply limit once made Volley reconnect at once, forever (15 360
connections in 2 s), without trying the backup MX and without deferring or logging
anything.  Now: the backup MX is tried, the mail is deferred with the reason, and a
failing destination gets at most one connection attempt per worker per MX address per
retry step (slow start + dead destination, README "Guarantees").
"""

from __future__ import annotations

import pytest

from tests.support.internet import message
from tests.support.net import wait_for
from tests.support.scripted import CLOSE, SILENT, Script, replace, standard

STEP = 1.0  # seconds: the retry schedule's only step, so the bound below is per second
WINDOW = 3.0  # seconds of failures observed
WORKERS = 2

CASES: dict[str, tuple[Script, str]] = {
    "closes on accept": (replace("GREETING", CLOSE), "during greeting"),
    "never greets": (replace("GREETING", SILENT), "timed out during greeting"),
    "drops after EHLO": (replace("EHLO", CLOSE), "during ehlo"),
    "EHLO line over the reply limit": (
        replace("EHLO", b"250-" + b"x" * 3000 + b"\r\n250 ok\r\n"),
        "protocol error from remote during ehlo",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_failing_before_ready_tries_the_backup_then_defers_with_bounded_attempts(
    net, volley, case: str
) -> None:
    script, reason = CASES[case]
    dead = net.scripted(script)
    net.publish("dead.test", [dead.ip])
    hostile = net.scripted(script)
    (backup,) = [net.receiver()]
    net.publish("backup.test", [hostile.ip, backup.ip])
    v = volley(
        workers=WORKERS,
        config={
            "smtp": {"timeouts": {"greeting": "1s", "ehlo": "1s"}},
            "domains": {"default": {"retry_schedule": [f"{STEP}s"], "retry_jitter": 0.0}},
        },
    )
    v.drop(message("news@sender.test", ["ann@backup.test"]))
    for i in range(20):  # on both workers: drop names hash over the shards
        v.drop(message("news@sender.test", [f"u{i}@dead.test"], seq=i))

    wait_for(lambda: backup.delivered_to("ann@backup.test"), timeout=20, message=v.log)
    assert hostile.connections >= 1  # tried first, in preference order

    wait_for(lambda: dead.connections >= 1, timeout=20, message=v.log)
    first = dead.connection_times[0]
    wait_for(
        lambda: v.count("deferred") >= 20 and dead.connection_times[-1] - first >= WINDOW,
        timeout=30,
        message=lambda: f"{dead.connections} connections; {v.log()[-5:]}",
    )
    within = [t for t in dead.connection_times if t - first <= WINDOW]
    # One attempt per worker per retry step (each failing its one MX address); +1 step of
    # slack for where the window falls.  The old code made thousands a second.
    bound = WORKERS * (WINDOW / STEP + 2)
    assert len(within) <= bound, f"{len(within)} connections in {WINDOW}s, bound {bound}"
    deferred = [r for r in v.events("deferred") if r["domain"] == "dead.test"]
    assert deferred and all(reason in r["text"] for r in deferred), deferred[0]["text"]
    assert all(r["code"] == 451 for r in deferred)
    assert v.count("bounced") == 0 and v.count("internal_error") == 0
    assert v.stop() == 0


def test_a_size_the_parser_cannot_read_is_no_limit_and_mail_flows(net, volley) -> None:
    """`250-SIZE ²` once raised ValueError out of EHLO parsing (same storm)."""
    ehlo = "250-scripted.test\r\n250-PIPELINING\r\n250 SIZE \u00b2\r\n".encode()
    odd = net.scripted(replace("EHLO", ehlo, standard))
    net.publish("odd.test", [odd.ip])
    v = volley(workers=1)
    v.drop(message("news@sender.test", ["ann@odd.test"]))
    wait_for(lambda: v.count("delivered") == 1, timeout=20, message=v.log)
    assert len(odd.messages) == 1 and odd.connections == 1
    assert v.stop() == 0
