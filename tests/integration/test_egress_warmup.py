"""Warm-up: a source's daily quota holds across workers and restarts.

A source whose warm-up starts today may send `first` messages today (its schedule is
flat here, first = last, so a test that runs across UTC midnight only gets one more
day's quota, which the assertions allow).  In a pool with a second source, exactly that
many leave from it and the rest from the other; alone in its pool, the rest waits — the
destination is paused with reason "warmup", as `volley queue` shows — and a restart of
`volley run` the same day does not give the source its quota again (<spool>/egress.db).
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from tests.support.crash import metric, restart
from tests.support.internet import message
from tests.support.net import wait_for
from tests.support.volley import Volley

QUOTA = 7


def _today() -> str:
    return time.strftime("%Y-%m-%d", time.gmtime())


def _utc_day() -> int:
    return int(time.time() // 86400)


def _warm(address: str) -> dict[str, Any]:
    start = _today()
    return {
        "address": address,
        "warmup": {"start": start, "days": 30, "first": QUOTA, "last": QUOTA},
    }


def _waits_for_warmup(v: Volley, domain: str) -> bool:
    rows = [line.split() for line in v.cli("queue").stdout.splitlines()]
    return any(row[0] == domain and row[-1] == "warmup" for row in rows if row)


def test_a_warming_source_sends_its_quota_and_the_pool_the_rest(net, volley) -> None:
    (rx,) = net.domain("mixed.test")
    warm, other = net.address(), net.address()
    first_day = _utc_day()
    v = volley(
        workers=2,
        config={
            "egress": {
                "sources": {"warm": _warm(warm), "other": {"address": other}},
                "pools": {"default": {"sources": {"warm": 1, "other": 1}}},
            },
            "domains": {"mixed.test": {"max_messages_per_connection": 3}},
        },
    )
    n = 60
    for i in range(n):
        v.drop(message("news@sender.test", [f"u{i}@mixed.test"], seq=i))
    wait_for(lambda: len(rx.messages) >= n, timeout=120, message=lambda: repr(rx))
    days = _utc_day() - first_day + 1
    peers = Counter(m.peer for m in rx.messages)
    print(f"messages per source address: {dict(peers)}")
    assert set(peers) <= {warm, other}
    assert QUOTA <= peers[warm] <= QUOTA * days, peers
    if days == 1:
        assert peers[warm] == QUOTA and peers[other] == n - QUOTA, peers
        port = v.metrics_port
        wait_for(
            lambda: metric(port, "volley_egress_messages_total", source="warm") == QUOTA,
            timeout=30,
            message=lambda: str(metric(port, "volley_egress_messages_total", source="warm")),
        )
        assert metric(port, "volley_egress_quota_used", source="warm") == QUOTA
        assert metric(port, "volley_egress_quota_left", source="warm") == 0
        assert metric(port, "volley_egress_quota_used", source="other") is None  # no warm-up
    assert v.stop() == 0


def test_alone_in_its_pool_the_rest_waits_and_a_restart_keeps_the_count(net, volley) -> None:
    (rx,) = net.domain("solo.test")
    warm = net.address()
    first_day = _utc_day()
    v = volley(
        workers=2,
        config={
            "egress": {
                "sources": {"warm": _warm(warm)},
                "pools": {"solo": {"sources": {"warm": 1}}},
            },
            "domains": {"solo.test": {"egress_pool": "solo", "max_messages_per_connection": 3}},
        },
    )
    n = 3 * QUOTA  # without the kept count, a restart would send QUOTA more at once
    for i in range(n):
        v.drop(message("news@sender.test", [f"u{i}@solo.test"], seq=i))
    wait_for(
        lambda: _waits_for_warmup(v, "solo.test"), timeout=60, message=lambda: v.cli("queue").stdout
    )
    assert len(rx.messages) == QUOTA, repr(rx)
    assert {m.peer for m in rx.messages} == {warm}
    assert v.stop() == 0
    assert (v.spool / "egress.db").exists()
    assert len(v.queued()) == n - QUOTA  # waiting, not deferred or bounced
    assert v.count("deferred") == 0 and v.count("bounced") == 0

    restart(v)
    # The restarted workers ask again and hear the day is used up: the destination waits.
    wait_for(
        lambda: _waits_for_warmup(v, "solo.test"), timeout=60, message=lambda: v.cli("queue").stdout
    )
    if _utc_day() == first_day:
        assert len(rx.messages) == QUOTA, repr(rx)
        assert metric(v.metrics_port, "volley_egress_quota_left", source="warm") == 0
    assert v.stop() == 0
