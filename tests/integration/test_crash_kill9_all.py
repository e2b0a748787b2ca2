"""kill -9 of the whole of Volley, ten times during one 5 000-message run: nothing is lost.

Volley's promise is at-least-once: every message it took is delivered, bounced or still
queued, whatever happens to its processes. Here the supervisor and every worker are
SIGKILLed at 10 random instants (random points of progress, some during recovery and
intake) and `volley run` is started again on the same spool each time.

At the end: every (Message-ID, recipient) pair reached its receiver; the spool holds
nothing (queue/, tmp/, incoming/, corrupt/ empty); the log has a `delivered` record for
every pair and no torn line except possibly at the very end; and duplicates are only
messages that were in flight at a kill.

The duplicate bound is counted, not a constant. At each kill, once the receivers have
seen the dead processes' connections close, kill9_run counts the transactions they
accepted from that incarnation whose recipients the spool still listed as pending: what
Volley had sent but not yet recorded. Every transaction sent again after the kill must be
one of those (kill9_run raises otherwise), and their number is bounded as the README's
Guarantees say: `smtp.pipeline_depth` transactions per connection open at the kill (the
oldest one's final reply outstanding while the next ones' are on the wire), plus the
finished entries still on their way to the spool (per worker at most 2 waiting for their
log lines' batch and 4 on the write-behind thread). kill9_run also checks the finer rules:
no two copies of one recipient's message between the same two kills, and no drop taken
again after its delivery.
"""

from __future__ import annotations

from tests.support.kill9_run import kill9_run

MESSAGES = 5_000
KILLS = 10
DOMAINS = 4
MAX_CONNECTIONS = 4
WORKERS = 2
PIPELINE_DEPTH = 2  # the default, set here so the bound below says what it assumes
FINISHED_IN_TRANSIT = 2 + 4  # per worker: waiting for the log's batch, on the write-behind


def test_kill9_everything_ten_times_loses_nothing(net, volley) -> None:
    report = kill9_run(
        net,
        lambda config: volley(workers=WORKERS, config=config),
        messages=MESSAGES,
        kills=KILLS,
        domains=DOMAINS,
        max_connections=MAX_CONNECTIONS,
        pipeline_depth=PIPELINE_DEPTH,
        deadline=150.0,
        progress=print,
    )
    print("kill -9 run:", report.as_dict())
    assert len(report.kills) == KILLS
    assert report.in_flight_capacity == DOMAINS * MAX_CONNECTIONS
    counted = report.accepted_unrecorded_per_kill
    # Resent <= accepted but unrecorded, kill by kill (kill9_run checks it set by set).
    assert all(r <= u for r, u in zip(report.resent_per_kill, counted, strict=True))
    for unrecorded, conns in zip(counted, report.connections_at_kill, strict=True):
        # The receivers' count of open connections can include connections of the
        # killed incarnation whose close they have not processed yet (seen once at load
        # 8: 18 against 16 slots), so the engine's own limit caps it here.
        open_at_kill = min(conns, report.in_flight_capacity)
        bound = PIPELINE_DEPTH * open_at_kill + FINISHED_IN_TRANSIT * WORKERS
        assert unrecorded <= bound, report.as_dict()
