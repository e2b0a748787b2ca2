"""A poison message is quarantined after it crashed its worker 3 times; the rest flows.

"Poison" here is a message whose delivery kills the worker. The test plays the crash: a
message to a `stall` recipient is provably in flight (the receiver holds its RCPT reply)
each time worker 0 is SIGKILLed, three times. The supervisor restarts the worker each
time (it died while the supervisor lived), the new worker counts a crash against every
entry that was in flight, and at the 3rd the entry goes to corrupt/ with a reason that
gives the count, a `quarantined` log record says so, and it is never tried again.
Messages dropped before and after are delivered.

A whole-instance kill -9 is not the message's fault: after three kills of everything
with the same message in flight, a fresh `volley run` still delivers it.
"""

from __future__ import annotations

from tests.support.crash import (
    drop_name_for_shard,
    kill_worker,
    leftovers,
    restart,
    wait_new_worker,
    worker_pids,
)
from tests.support.internet import message
from tests.support.net import wait_for

POISON = "stall-poison@slow.test"
CONFIG = {"smtp": {"timeouts": {"rcpt": "60s"}}}


def test_entry_that_crashes_its_worker_three_times_is_quarantined(net, volley) -> None:
    (slow,) = net.domain("slow.test")
    (ok,) = net.domain("ok.test")
    v = volley(workers=2, config=CONFIG)
    before = [f"before{i}@ok.test" for i in range(4)]
    for i, rcpt in enumerate(before):
        v.drop(message("news@sender.test", [rcpt], seq=i), name=drop_name_for_shard(i % 2, 2, rcpt))
    # Delivered and logged before the poison arrives: not in flight at any kill below.
    wait_for(
        lambda: {r["rcpt"] for r in v.events("delivered")} == set(before),
        timeout=30,
        message=lambda: f"{v.log()}",
    )
    v.drop(message("news@sender.test", [POISON], seq=10), name=drop_name_for_shard(0, 2, "poison"))
    other1 = worker_pids(v)[1]

    for crash in (1, 2, 3):
        # In flight: the receiver holds the RCPT of attempt number `crash`.
        wait_for(
            lambda c=crash: slow.rcpt_attempts(POISON) == c and slow.stalled_count == 1,  # type: ignore[misc]
            timeout=30,
            message=lambda: f"{slow!r} {v.log()[-5:]}\n{v.text_output()}",
        )
        killed = kill_worker(v, 0)
        wait_new_worker(v, 0, killed)

    corrupt = v.spool / "corrupt"
    wait_for(
        lambda: list(v.events("quarantined")),
        timeout=30,
        message=lambda: f"{sorted(p.name for p in corrupt.iterdir())} {v.log()[-5:]}",
    )
    (q,) = v.events("quarantined")
    assert q["domain"] == "slow.test" and "3" in q["reason"] and "crash" in q["reason"], q
    files = sorted(p.name for p in corrupt.iterdir())
    assert len(files) == 2 and files[1] == files[0] + ".reason", files
    assert files[0].startswith(q["id"] + "@slow.test")
    reason = (corrupt / files[1]).read_text()
    assert "3" in reason and "crash" in reason, reason

    after = [f"after{i}@ok.test" for i in range(4)]
    for i, rcpt in enumerate(after):
        v.drop(
            message("news@sender.test", [rcpt], seq=20 + i),
            name=drop_name_for_shard(i % 2, 2, rcpt),
        )
    wait_for(
        lambda: all(ok.delivered_to(r) for r in before + after),
        timeout=30,
        message=lambda: f"{ok.messages} {v.log()[-5:]}",
    )
    assert worker_pids(v)[1] == other1  # the other worker never stopped
    slow.release_stalled()
    assert v.stop() == 0
    # Quarantined entries are never tried again.
    assert slow.rcpt_attempts(POISON) == 3 and slow.messages == []
    got = sorted(m.rcpt_tos[0] for m in ok.messages)
    assert set(got) == set(before + after), got
    # None of them was in flight when worker 0 was killed: the "before" ones were logged
    # delivered first, the "after" ones dropped after the last kill.
    assert got == sorted(before + after), f"sent twice though not in flight at a kill: {got}"
    left = leftovers(v.spool)
    assert left["queue"] == [] and left["incoming"] == [] and left["tmp"] == [], left
    out = v.text_output()
    assert out.count("worker 0 exited with status -9; restarting") == 3, out
    assert "worker 1 exited" not in out, out


def test_whole_instance_kills_do_not_count_as_crashes(net, volley) -> None:
    (slow,) = net.domain("slow.test")
    v = volley(workers=2, config=CONFIG)
    v.drop(message("news@sender.test", [POISON], seq=1), name=drop_name_for_shard(0, 2, "poison"))
    for kill in (1, 2, 3):
        wait_for(
            lambda k=kill: slow.rcpt_attempts(POISON) == k and slow.stalled_count == 1,  # type: ignore[misc]
            timeout=30,
            message=lambda: f"{slow!r} {v.log()[-5:]}\n{v.text_output()}",
        )
        v.kill()
        restart(v)
    slow.release_stalled()
    wait_for(lambda: slow.messages, timeout=30, message=lambda: f"{v.log()[-5:]}")
    assert v.stop() == 0
    assert [m.rcpt_tos for m in slow.messages] == [(POISON,)]
    assert slow.rcpt_attempts(POISON) == 4
    assert list(v.events("quarantined")) == []
    assert list((v.spool / "corrupt").iterdir()) == []
    assert v.queued() == []
