from dataclasses import dataclass

from engine.sched.queue import WorkQueue, ideal_connections


@dataclass(frozen=True)
class E:
    name: str
    domain: str


def test_ideal_connections_fills_each_connection() -> None:
    assert ideal_connections(0, 10, 100) == 0
    assert ideal_connections(1, 10, 100) == 1
    assert ideal_connections(100, 10, 100) == 1
    assert ideal_connections(101, 10, 100) == 2
    assert ideal_connections(1000, 10, 100) == 10
    assert ideal_connections(50_000, 10, 100) == 10


def test_due_entries_are_ready_fifo_and_future_ones_wait() -> None:
    q = WorkQueue()
    assert q.add(E("a", "x.test"), due=10.0, now=10.0)
    assert q.add(E("b", "x.test"), due=10.0, now=10.0)
    assert q.add(E("c", "x.test"), due=15.0, now=10.0)
    assert not q.add(E("a", "x.test"), due=10.0, now=10.0)  # known already
    assert q.next_due() == 15.0
    assert [q.take("x.test"), q.take("x.test"), q.take("x.test")] == [
        E("a", "x.test"),
        E("b", "x.test"),
        None,
    ]
    assert q.release_due(14.9) == set()
    assert q.release_due(15.0) == {"x.test"}
    assert q.take("x.test") == E("c", "x.test")
    assert q.counts() == (0, 0, 3)


def test_done_forgets_or_reschedules() -> None:
    q = WorkQueue()
    q.add(E("a", "x"), 0.0, 0.0)
    e = q.take("x")
    assert e is not None
    q.done(e, retry_at=60.0, now=1.0)
    assert q.counts() == (0, 1, 0)
    assert q.release_due(60.0) == {"x"}
    e = q.take("x")
    assert e is not None
    q.done(e, retry_at=None, now=61.0)
    assert len(q) == 0
    assert q.add(E("a", "x"), 0.0, 61.0)  # forgotten, so a new entry of that name is new


def test_connections_wanted_counts_backlog_and_live_connections() -> None:
    q = WorkQueue()
    for i in range(250):
        q.add(E(f"m{i}", "big.test"), 0.0, 0.0)
    assert q.connections_wanted("big.test", 10, 100) == 1  # slow start: one until proven
    q.domain("big.test").window = 10
    assert q.connections_wanted("big.test", 10, 100) == 3
    q.domain("big.test").connections = 3
    assert q.connections_wanted("big.test", 10, 100) == 0
    q.domain("big.test").window = 1
    q.domain("big.test").connections = 1
    assert q.connections_wanted("big.test", 10, 100) == 0
    assert q.connections_wanted("none.test", 10, 100) == 0


def test_suspended_domain_holds_new_and_due_entries_until_resumed() -> None:
    q = WorkQueue()
    q.add(E("a", "down.test"), 0.0, 0.0)
    assert q.take("down.test") == E("a", "down.test")
    q.add(E("b", "down.test"), 0.0, 0.0)
    ready = q.suspend("down.test", until=100.0)
    assert ready == [E("b", "down.test")]
    q.add(E("c", "down.test"), 0.0, 1.0)  # arrives during suspension
    assert q.domain("down.test").ready == type(q.domain("down.test").ready)()
    for e in ready:
        q.done(e, retry_at=50.0, now=1.0)  # its own retry is earlier than the suspension
    assert q.release_due(60.0) == set()
    assert q.release_due(100.0) == {"down.test"}
    assert {q.take("down.test"), q.take("down.test")} == {E("b", "down.test"), E("c", "down.test")}


def test_simulation_many_domains_in_milliseconds() -> None:
    """10 000 entries over 300 domains, 30 % deferred twice: every entry ends exactly once."""
    import random

    rng = random.Random(5)
    q = WorkQueue()
    for i in range(10_000):
        q.add(E(f"m{i}", f"d{rng.randrange(300)}.test"), 0.0, 0.0)
    attempts: dict[str, int] = {}
    finished = 0
    now = 0.0
    while len(q):
        q.release_due(now)
        for domain in q.ready_domains():
            while (e := q.take(domain)) is not None:
                attempts[e.name] = attempts.get(e.name, 0) + 1
                if attempts[e.name] < 3 and rng.random() < 0.3:
                    q.done(e, retry_at=now + 60.0, now=now)
                else:
                    q.done(e, retry_at=None, now=now)
                    finished += 1
        nxt = q.next_due()
        now = nxt if nxt is not None else now
    assert finished == 10_000
    assert q.counts() == (0, 0, 0)


def test_depths_and_oldest_age_per_domain() -> None:
    q = WorkQueue()
    a1, a2, b1 = E("1@a.test", "a.test"), E("2@a.test", "a.test"), E("3@b.test", "b.test")
    q.add(a1, 0.0, now=100.0, born=10.0)
    q.add(a2, 0.0, now=100.0, born=20.0)
    q.add(b1, 500.0, now=100.0, born=30.0)
    assert q.depths() == {"a.test": (2, 10.0), "b.test": (1, 30.0)}
    e = q.take("a.test")
    assert e == a1
    q.done(e, retry_at=None, now=101.0)
    # The running minimum still shows the departed entry until refreshed.
    assert q.depths()["a.test"] == (1, 10.0)
    q.refresh_oldest()
    assert q.depths() == {"a.test": (1, 20.0), "b.test": (1, 30.0)}
    e = q.take("a.test")
    assert e is not None
    q.done(e, retry_at=None, now=102.0)
    assert q.depths() == {"b.test": (1, 30.0)}
