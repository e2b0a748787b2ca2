"""max_message_rate holds across workers, at the receiver, second by second.

2 000 messages to a domain limited to 50/s, sent by two workers over up to four
connections: the supervisor hands out send instants (GCRA, burst 1) in batches, so the
receiver never counts more than 50 in any one-second window, apart from the jitter
between an instant and the message's arrival (stated below), and the limit is used:
the run takes the 40 s the limit implies, not more.
"""

from __future__ import annotations

import bisect
from collections import Counter

from tests.support.internet import message
from tests.support.net import wait_for

MESSAGES = 2000
RATE = 50
# Slack, stated: one batch.  A connection asks for 50 ms of the limit at a time
# (engine.runtime.pacing: ceil(50/s x 50 ms) = 3 instants) and still uses an instant up to
# 50 ms late rather than waste it, so a one-second window can hold the limit plus 2.5
# messages; the receiver's clock (`at`: the end of DATA, 1-50 ms after the instant on a
# loaded 2-core machine) blurs the edges by as much again.  Measured: 50 per calendar
# second, 52-53 per sliding second (quiet); 55 and 58 under load.
SLACK = 3


def _max_in_window(times: list[float], window: float) -> int:
    return max(bisect.bisect_left(times, t + window) - i for i, t in enumerate(times))


def test_message_rate_holds_across_workers(net, volley) -> None:
    (rx,) = net.domain("paced.test")
    v = volley(
        workers=2,
        config={
            "domains": {
                "paced.test": {
                    "max_message_rate": f"{RATE}/s",
                    "max_connections": 4,
                    "max_messages_per_connection": 200,
                }
            }
        },
    )
    for i in range(MESSAGES):
        v.drop(message("news@sender.test", [f"u{i}@paced.test"], seq=i))

    def throttled_visible() -> bool:
        rows = [line.split() for line in v.cli("queue").stdout.splitlines()]
        return any(row[0] == "paced.test" and row[-1] == "rate" for row in rows if row)

    # While it runs, `volley queue` says the destination waits for its rate.
    wait_for(throttled_visible, timeout=60, message=lambda: v.cli("queue").stdout)
    wait_for(lambda: len(rx.messages) >= MESSAGES, timeout=180, message=lambda: repr(rx))
    times = sorted(m.at for m in rx.messages)
    assert len(times) == MESSAGES
    per_second = Counter(int(t) for t in times)
    per_window = _max_in_window(times, 1.0)
    print(f"max per calendar second {max(per_second.values())}, per sliding second {per_window}")
    # The receiver's timestamps carry the jitter of a loaded machine: a stall of ~100 ms
    # moves a few messages across a second's boundary (CI, 2026-12-07: 45 in one
    # calendar second, 55 in the next; 58 in a sliding second once at load 8), so both
    # checks allow the slack twice.  A limit not enforced across workers gives 100+.
    assert max(per_second.values()) <= RATE + 2 * SLACK, per_second
    assert per_window <= RATE + 2 * SLACK, per_window
    # The limit was the bottleneck and was used: 1 999 intervals of 20 ms.
    span = times[-1] - times[0]
    assert span >= (MESSAGES - 1) / RATE - 0.5, span
    assert span <= (MESSAGES - 1) / RATE * 1.25, span
    assert len({m.peer for m in rx.messages}) == 1
    assert v.stop() == 0
