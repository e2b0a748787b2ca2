"""kill -9 of the whole of Volley, ten times during one 5 000-message run: nothing is lost.

Volley's promise is at-least-once: every message it took is delivered, bounced or still
queued, whatever happens to its processes. Here the supervisor and every worker are
SIGKILLed at 10 random instants (random points of progress, some during recovery and
intake) and `volley run` is started again on the same spool each time.

At the end: every (Message-ID, recipient) pair reached its receiver; the spool holds
nothing (queue/, tmp/, incoming/, corrupt/ empty); the log has a `delivered` record for
every pair and no torn line except possibly at the very end; and duplicates are only
messages that were in flight at a kill.

Why the duplicate bound is `kills x domains x max_connections` transactions: connection
slots are leased across all workers, so at most `max_connections` transactions per domain
are open at any instant (one transaction at a time per connection), and only a
transaction that the receiver accepted but whose outcome had not yet reached the spool is
sent again after a restart. The bound is on the total, as the brief asks; the count per
kill is printed (with the write-behind thread, completed deliveries whose entry unlink was
still queued at the kill are sent again too, so one kill can exceed the open
connections). kill9_run also checks the finer rules: no two copies of one recipient's
message between the same two kills, and no drop taken again after its delivery.
"""

from __future__ import annotations

from tests.support.kill9_run import kill9_run

MESSAGES = 5_000
KILLS = 10
DOMAINS = 4
MAX_CONNECTIONS = 4


def test_kill9_everything_ten_times_loses_nothing(net, volley) -> None:
    report = kill9_run(
        net,
        lambda config: volley(workers=2, config=config),
        messages=MESSAGES,
        kills=KILLS,
        domains=DOMAINS,
        max_connections=MAX_CONNECTIONS,
        deadline=150.0,
        progress=print,
    )
    print("kill -9 run:", report.as_dict())
    assert len(report.kills) == KILLS
    capacity = DOMAINS * MAX_CONNECTIONS
    assert report.in_flight_capacity == capacity
    assert all(n <= capacity for n in report.logged_and_queued), report.as_dict()
    assert sum(report.resent_per_kill) <= KILLS * capacity, report.as_dict()
