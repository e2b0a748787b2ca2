"""engine.runtime.gauges: the entry-state gauges, and a full per-destination snapshot in
which a destination that emptied has no series left."""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.runtime.gauges import held_back, set_domain_gauges, set_entry_gauges
from engine.sched.queue import WorkQueue
from engine.telemetry.metrics import CheckedTally


@dataclass(frozen=True)
class E:
    name: str
    domain: str


@dataclass
class Conns:
    open_sessions: dict[str, int] = field(default_factory=dict)
    idle_sessions: dict[str, int] = field(default_factory=dict)
    rate_waits: dict[str, int] = field(default_factory=dict)
    waiting_for_slot: dict[str, int] = field(default_factory=dict)


def gauges(t: CheckedTally) -> dict[tuple[str, tuple[str, ...]], float]:
    _, state, _ = t.drain()
    return {(name, tuple(labels)): value for name, labels, value in state}


def test_entry_states_and_a_snapshot_per_destination() -> None:
    q = WorkQueue()
    q.add(E("a", "x.test"), due=100.0, now=100.0, born=90.0)
    q.add(E("b", "x.test"), due=100.0, now=100.0, born=95.0)
    q.add(E("c", "y.test"), due=500.0, now=100.0, born=99.0)
    q.take("x.test")
    t = CheckedTally()
    set_entry_gauges(t, q)
    conns = Conns({"x.test": 1, "gone.test": 0}, {"x.test": 0})
    set_domain_gauges(t, q, conns, now=110.0)
    got = gauges(t)
    assert got[("volley_queue_entries", ("ready",))] == 1
    assert got[("volley_queue_entries", ("waiting",))] == 1
    assert got[("volley_queue_entries", ("inflight",))] == 1
    assert got[("volley_queue_depth", ("x.test",))] == 2
    assert got[("volley_queue_depth", ("y.test",))] == 1
    assert got[("volley_queue_oldest_age_seconds", ("_all",))] == 20.0
    assert got[("volley_connections_open", ("x.test",))] == 1
    assert ("volley_connections_open", ("gone.test",)) not in got  # zero: no series
    assert ("volley_connections_idle", ("x.test",)) not in got

    q2 = WorkQueue()  # everything delivered: the next snapshot drops the old series
    set_domain_gauges(t, q2, Conns(), now=120.0)
    again = gauges(t)
    assert not [k for k in again if k[0] == "volley_queue_depth"]
    assert again[("volley_queue_oldest_age_seconds", ("_all",))] == 0.0


def test_entries_held_back_by_a_limit_say_which() -> None:
    q = WorkQueue()
    for i, domain in enumerate(("rate.test", "slot.test", "busy.test", "paused.test", "free.test")):
        for j in range(3):
            q.add(E(f"{i}-{j}", domain), due=100.0, now=100.0)
    q.release_due(100.0)
    q.pause("paused.test", 200.0, "shaping")
    conns = Conns(
        open_sessions={"busy.test": 1},
        rate_waits={"rate.test": 1},
        waiting_for_slot={"slot.test": 2, "busy.test": 1},
    )
    assert held_back(q, conns) == {
        "rate.test": ("rate", 3),
        "slot.test": ("connection", 3),
        "paused.test": ("shaping", 3),
    }
    t = CheckedTally()
    set_domain_gauges(t, q, conns, now=100.0)
    assert gauges(t)[("volley_queue_throttled", ("rate.test", "rate"))] == 3
