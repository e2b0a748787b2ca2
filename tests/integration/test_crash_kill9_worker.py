"""kill -9 of one worker in the middle of a transaction: restarted, nothing lost, others go on.

Worker 0 holds a transaction that provably is in flight (a `stall` recipient: the receiver
holds its RCPT reply). SIGKILL that worker alone. The supervisor notices, says so, counts
the restart at /metrics and starts a new worker 0 after its backoff; the new worker sends
the stalled message again (after the receiver lets stalls through) and takes the drops
that arrived for shard 0 while it was down. Meanwhile worker 1 never stops: messages
dropped for it are received while worker 0 is down, which the receipt times prove against
the start time of the new worker 0 process.
"""

from __future__ import annotations

import time

from tests.support.crash import (
    drop_name_for_shard,
    kill_worker,
    metric,
    process_start_time,
    wait_new_worker,
    worker_pids,
)
from tests.support.internet import message
from tests.support.net import wait_for

STALL = "stall-a@slow.test"


def test_worker_killed_mid_transaction_is_restarted(net, volley) -> None:
    (slow,) = net.domain("slow.test")
    (ok,) = net.domain("ok.test")
    v = volley(workers=2)
    v.drop(message("news@sender.test", [STALL], seq=1), name=drop_name_for_shard(0, 2, "stall"))
    wait_for(lambda: slow.stalled_count == 1, timeout=30, message=lambda: f"{v.log()}")
    before = worker_pids(v)
    assert set(before) == {0, 1}

    killed = kill_worker(v, 0)
    t_kill = time.time()
    # While worker 0 is down, worker 1 keeps delivering: drop one message at a time for
    # shard 1 and see it arrive, until the supervisor has a new worker 0.
    n = 0
    while worker_pids(v).get(0, killed) == killed:
        n += 1
        rcpt = f"during{n}@ok.test"
        v.drop(
            message("news@sender.test", [rcpt], seq=100 + n),
            name=drop_name_for_shard(1, 2, f"during{n}"),
        )
        wait_for(lambda r=rcpt: ok.delivered_to(r), timeout=30, message=lambda: f"{v.log()}")  # type: ignore[misc]
        assert n < 500, "worker 0 was never restarted"
    new0 = wait_new_worker(v, 0, killed)
    t_new = process_start_time(new0)
    # Drops for shard 0 that arrived while it was down (or just after) wait in incoming/.
    for i in range(3):
        v.drop(
            message("news@sender.test", [f"shard0-{i}@ok.test"], seq=200 + i),
            name=drop_name_for_shard(0, 2, f"shard0-{i}"),
        )
    slow.release_stalled()

    wait_for(
        lambda: (
            slow.delivered_to(STALL)
            and all(ok.delivered_to(f"shard0-{i}@ok.test") for i in range(3))
        ),
        timeout=30,
        message=lambda: f"{v.log()}\n{v.text_output()}",
    )
    # The stalled transaction died with its worker before any data: exactly one copy.
    assert len(slow.delivered_to(STALL)) == 1
    (rec,) = [r for r in v.events("delivered") if r["rcpt"] == STALL]
    assert rec["worker"] == 0 and rec["attempt"] == 1  # the entry was never rewritten

    # Worker 1 delivered while worker 0 was down (start times have 10 ms ticks).
    during = [m.at for i in range(1, n + 1) for m in ok.delivered_to(f"during{i}@ok.test")]
    assert len(during) == n
    assert [at for at in during if t_kill < at < t_new - 0.01], (t_kill, t_new, during)
    # Only worker 0 was ever restarted, once.
    assert worker_pids(v)[1] == before[1]
    out = v.text_output()
    assert "worker 0 exited with status -9; restarting" in out, out
    assert "worker 1 exited" not in out, out
    assert (metric(v.metrics_port, "volley_worker_restarts_total") or 0) >= 1
    assert v.stop() == 0
    assert v.queued() == [] and v.incoming() == []
