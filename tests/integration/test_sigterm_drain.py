"""SIGTERM drains: in-flight transactions finish, nothing new starts, exit 0, next start resumes.

Three `stall` transactions are held by the receiver (provably in flight) when the
supervisor gets SIGTERM; a fourth message for that domain waits for a connection slot
(max_connections = 3). Each worker also has an idle pooled connection to ok.test, and
those closing shows that the drain reached both workers. Only then are new messages
dropped and the stalls released: the three finish and are logged delivered, the fourth
and the new drops are not sent, the exit status is 0, and the next start sends the rest.

A drain is bounded by `shutdown.drain_timeout`: with a receiver that never answers, the
process still exits within drain_timeout plus process teardown, and the message it could
not finish is delivered after the restart.
"""

from __future__ import annotations

import signal
import time

from tests.support.crash import drop_name_for_shard, restart
from tests.support.internet import message
from tests.support.net import wait_for
from tests.support.volley import Volley

IN_FLIGHT = [f"stall-{i}@slow.test" for i in range(3)]
WAITING = "stall-3@slow.test"


def test_sigterm_finishes_in_flight_and_starts_nothing_new(net, volley) -> None:
    (slow,) = net.domain("slow.test")
    (ok,) = net.domain("ok.test")
    v = volley(
        workers=2,
        config={
            "smtp": {"idle_timeout": "60s", "timeouts": {"rcpt": "60s"}},
            "shutdown": {"drain_timeout": "30s"},
            # One message per connection, so each stall holds its own connection.
            "domains": {"slow.test": {"max_connections": 3, "max_messages_per_connection": 1}},
        },
    )
    # An idle connection to ok.test in each worker.
    for k in (0, 1):
        v.drop(
            message("news@sender.test", [f"warm{k}@ok.test"], seq=k),
            name=drop_name_for_shard(k, 2, f"warm{k}"),
        )
    wait_for(lambda: len(ok.messages) == 2 and ok.open_connections == 2, timeout=30)
    for i, rcpt in enumerate(IN_FLIGHT):
        v.drop(
            message("news@sender.test", [rcpt], seq=10 + i),
            name=drop_name_for_shard(i % 2, 2, f"inflight{i}"),
        )
    wait_for(lambda: slow.stalled_count == 3, timeout=30, message=lambda: f"{v.log()}")
    v.drop(message("news@sender.test", [WAITING], seq=13), name=drop_name_for_shard(1, 2, "wait"))
    wait_for(
        lambda: any(r["rcpt"] == WAITING for r in v.events("received")),
        timeout=30,
        message=lambda: f"{v.log()}",
    )

    assert v.proc is not None
    v.proc.send_signal(signal.SIGTERM)
    # Both workers got the drain: their idle connections close. The stalls are still held.
    wait_for(lambda: ok.open_connections == 0, timeout=30, message=lambda: repr(ok))
    assert v.proc.poll() is None and slow.stalled_count == 3
    late = [f"late{i}@ok.test" for i in range(4)]
    for i, rcpt in enumerate(late):
        v.drop(message("news@sender.test", [rcpt], seq=20 + i))
    released = time.time()
    slow.release_stalled()
    assert v.proc.wait(40) == 0, v.text_output()

    # The three in-flight transactions finished after the release and were logged.
    got = {m.rcpt_tos[0]: m for m in slow.messages}
    assert sorted(got) == sorted(IN_FLIGHT), got.keys()
    assert all(m.at >= released for m in got.values())
    assert sorted(r["rcpt"] for r in v.events("delivered") if r["domain"] == "slow.test") == sorted(
        IN_FLIGHT
    )
    # Nothing new started: the waiting message and the late drops were not sent.
    assert slow.rcpt_attempts(WAITING) == 0
    assert not [m for m in ok.messages if m.rcpt_tos[0] in late]
    # Each is still a drop in incoming/ or an entry in queue/: kept, not lost.
    queued = [v.entry(name)[0]["rcpts"] for name in v.queued()]
    assert sorted(r for rcpts in queued for r in rcpts) == sorted(
        [WAITING, *(r for r in late if r not in _drop_rcpts(v))]
    ), (queued, v.incoming())
    assert len(v.incoming()) == len(_drop_rcpts(v))

    # The next start resumes and delivers the rest, once each.
    restart(v)
    wait_for(
        lambda: slow.delivered_to(WAITING) and all(ok.delivered_to(r) for r in late),
        timeout=30,
        message=lambda: f"{v.log()}",
    )
    assert v.stop() == 0
    assert len(slow.messages) == 4
    assert sorted(m.rcpt_tos[0] for m in ok.messages) == sorted(
        ["warm0@ok.test", "warm1@ok.test", *late]
    )
    assert v.queued() == [] and v.incoming() == []


def _drop_rcpts(v: Volley) -> set[str]:
    """Recipients of the drops still in incoming/ (each test message has one To)."""
    out = set()
    for name in v.incoming():
        head = (v.spool / "incoming" / name).read_bytes().split(b"\r\n\r\n", 1)[0]
        for line in head.split(b"\r\n"):
            if line.startswith(b"To: "):
                out.add(line[4:].decode())
    return out


def test_drain_is_bounded_by_drain_timeout(net, volley) -> None:
    (slow,) = net.domain("slow.test")
    drain = 2.0
    v = volley(
        workers=2,
        config={"shutdown": {"drain_timeout": f"{drain}s"}, "smtp": {"timeouts": {"rcpt": "60s"}}},
    )
    v.drop(message("news@sender.test", ["stall-x@slow.test"], seq=1))
    wait_for(lambda: slow.stalled_count == 1, timeout=30, message=lambda: f"{v.log()}")
    assert v.proc is not None
    t0 = time.monotonic()
    v.proc.send_signal(signal.SIGTERM)
    status = v.proc.wait(drain + 30)
    took = time.monotonic() - t0
    # drain_timeout, then cancellation, process teardown and the interpreter's exit.
    assert took < drain + 4.0, (took, v.text_output())
    assert status == 0, v.text_output()
    assert slow.messages == [] and v.count("delivered") == 0
    assert len(v.queued()) == 1  # left exactly as it was on disk

    slow.release_stalled()
    restart(v)
    wait_for(lambda: slow.messages, timeout=30, message=lambda: f"{v.log()}")
    assert v.stop() == 0
    assert [m.rcpt_tos for m in slow.messages] == [("stall-x@slow.test",)]
    (rec,) = v.events("delivered")
    assert rec["attempt"] == 1
    assert v.queued() == []
