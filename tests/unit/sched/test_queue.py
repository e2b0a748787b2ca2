import random
from dataclasses import dataclass

import pytest

from engine.sched.queue import EntryState, WorkQueue, ideal_connections
from spool.ids import id_time
from spool.layout import EntryRef
from tests.support.compact_rows import index_of
from tests.support.compact_rows import name as row_name


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


# -- operator controls: hold (suspension), flush, extract, marks, listing ------------------
def names(entries: list[object]) -> list[str]:
    return [e.name for e in entries]  # type: ignore[attr-defined]


def test_hold_parks_ready_and_new_entries_and_unhold_restores_their_order() -> None:
    q = WorkQueue()
    q.add(E("a", "h"), 0.0, 0.0)
    q.add(E("b", "h"), 0.0, 0.0)
    assert q.hold("h", until=100.0) == 2
    q.add(E("c", "h"), 0.0, 1.0)  # intake while held
    q.add(E("d", "h"), 5.0, 1.0)  # deferred, due while held
    assert q.take("h") is None and list(q.ready_domains()) == []
    assert q.connections_wanted("h", 10, 100) == 0
    assert q.release_due(6.0) == set()  # d parks instead of becoming ready
    assert q.counts() == (0, 4, 0)  # parked entries count as waiting
    assert q.unhold("h", now=7.0) is True
    assert [q.take("h") for _ in range(4)] == [E("a", "h"), E("b", "h"), E("c", "h"), E("d", "h")]
    assert q.unhold("h", now=8.0) is False  # nothing held any more


def test_a_hold_ends_by_itself_in_release_due_and_next_due_wakes_for_it() -> None:
    q = WorkQueue()
    q.hold("h", until=50.0)
    q.add(E("a", "h"), 0.0, 0.0)
    assert q.next_due() == 50.0  # the dispatcher wakes when the hold ends
    assert q.release_due(49.9) == set() and q.take("h") is None
    assert q.release_due(50.0) == {"h"}
    assert q.take("h") == E("a", "h") and dict(q.holds) == {}


def test_unhold_leaves_an_automatic_suspension_in_place() -> None:
    q = WorkQueue()
    q.add(E("a", "h"), 0.0, 0.0)
    q.hold("h", until=1000.0)
    q.domain("h").suspended_until = 300.0  # all MX hosts failed meanwhile
    assert q.unhold("h", now=10.0) is False  # back to the heap until the automatic one ends
    assert q.release_due(299.0) == set()
    assert q.release_due(300.0) == {"h"} and q.take("h") == E("a", "h")


def test_set_holds_replaces_the_whole_set() -> None:
    q = WorkQueue()
    q.add(E("a", "x"), 0.0, 0.0)
    q.set_holds({"x": 100.0, "y": 100.0}, now=1.0)
    assert set(q.holds) == {"x", "y"} and q.take("x") is None
    assert q.set_holds({"y": 200.0}, now=2.0) == {"x"}  # x lifted: it has ready work again
    assert dict(q.holds) == {"y": 200.0} and q.take("x") == E("a", "x")


def test_a_taken_entry_given_back_while_held_is_parked_first() -> None:
    q = WorkQueue()
    q.add(E("a", "h"), 0.0, 0.0)
    q.add(E("b", "h"), 0.0, 0.0)
    e = q.take("h")
    assert e is not None
    q.hold("h", until=100.0)
    q.untake(e)
    assert q.take("h") is None
    q.unhold("h", now=1.0)
    assert [q.take("h"), q.take("h")] == [E("a", "h"), E("b", "h")]


def test_flush_makes_deferred_entries_due_now_and_ends_automatic_suspensions() -> None:
    q = WorkQueue()
    for name, domain in (("a", "x"), ("b", "x"), ("c", "y")):
        q.add(E(name, domain), 0.0, 0.0)
    for d in ("x", "x", "y"):
        e = q.take(d)
        assert e is not None
        q.done(e, retry_at=3600.0, now=1.0)
    q.domain("x").suspended_until = 3600.0
    assert q.flush("x", now=2.0) == 2
    assert q.domain("x").suspended_until == 0.0
    assert q.release_due(2.0) == {"x"}  # y keeps its retry time
    assert q.counts() == (2, 1, 0)
    assert q.flush(None, now=3.0) == 1 and q.release_due(3.0) == {"y"}


def test_flush_does_not_lift_an_operator_hold() -> None:
    q = WorkQueue()
    q.add(E("a", "h"), 0.0, 0.0)
    e = q.take("h")
    assert e is not None
    q.done(e, retry_at=3600.0, now=1.0)
    q.hold("h", until=7200.0)
    assert q.flush("h", now=2.0) == 1
    assert q.release_due(2.0) == set() and q.take("h") is None
    assert q.entries() == [("a", EntryState.HELD, None)]


def test_extract_takes_waiting_entries_wherever_they_are_and_reports_in_flight() -> None:
    q = WorkQueue()
    q.add(E("ready", "x"), 0.0, 0.0)
    q.add(E("later", "x"), 500.0, 0.0)
    q.add(E("parked", "h"), 0.0, 0.0)
    q.hold("h", until=1000.0)
    q.add(E("busy", "y"), 0.0, 0.0)
    busy = q.take("y")
    got, in_flight = q.extract({"ready", "later", "parked", "busy", "unknown"})
    assert sorted(names(got)) == ["later", "parked", "ready"]
    assert in_flight == ["busy"]
    assert q.counts() == (0, 0, 4)  # all four are taken now: three by the caller
    for e in got:
        q.done(e, retry_at=None, now=1.0)
    assert busy is not None
    q.done(busy, retry_at=None, now=1.0)
    assert len(q) == 0 and q.release_due(2000.0) == set() and q.next_due() is None


def test_a_mark_claims_the_entry_when_its_attempt_leaves_recipients() -> None:
    claims: list[int] = []
    q = WorkQueue()
    q.on_claim = lambda: claims.append(1)
    q.add(E("a", "x"), 0.0, 0.0)
    q.add(E("b", "x"), 0.0, 0.0)
    a, b = q.take("x"), q.take("x")
    assert a is not None and b is not None
    q.mark("a", "tag-a")
    q.mark("b", "tag-b")
    q.done(a, retry_at=60.0, now=1.0)  # deferred: the operator action gets it
    q.done(b, retry_at=None, now=1.0)  # delivered: nothing left to act on
    assert claims == [1]
    assert q.claimed() == [(E("a", "x"), "tag-a")] and q.claimed() == []
    assert q.counts() == (0, 0, 1) and q.release_due(60.0) == set()  # still taken, not queued
    q.done(a, retry_at=None, now=2.0)
    assert len(q) == 0
    q.mark("gone", "tag")  # an entry not queued cannot be marked
    q.add(E("gone", "x"), 0.0, 3.0)
    g = q.take("x")
    assert g is not None
    q.done(g, retry_at=60.0, now=3.0)
    assert q.claimed() == []


def test_entries_lists_every_state_in_name_order() -> None:
    """Names end in "@<domain>", as spool entry names do (the domain filter uses it)."""
    q = WorkQueue()
    q.add(E("1a@x", "x"), 0.0, 0.0)
    q.add(E("2b@x", "x"), 0.0, 0.0)
    q.add(E("3c@x", "x"), 90.0, 0.0)
    q.add(E("4d@h", "h"), 0.0, 0.0)
    q.hold("h", until=100.0)
    assert q.take("x") == E("1a@x", "x")
    assert q.entries() == [
        ("1a@x", EntryState.TAKEN, None),
        ("2b@x", EntryState.READY, None),
        ("3c@x", EntryState.WAITING, 90.0),
        ("4d@h", EntryState.HELD, None),
    ]
    assert [n for n, _, _ in q.entries("x")] == ["1a@x", "2b@x", "3c@x"]
    assert q.entries(match=lambda n: n.startswith("3")) == [("3c@x", EntryState.WAITING, 90.0)]
    assert [n for n, _, _ in q.entries(limit=2)] == ["1a@x", "2b@x"]  # the oldest
    assert (q.count(), q.count("x"), q.count("nope")) == (4, 3, 0)
    assert sorted(q.names("x", lambda n: n != "2b@x")) == ["1a@x", "3c@x"]
    assert "2b@x" in q and "zz" not in q


def test_idle_domains_are_forgotten_and_busy_or_suspended_ones_kept() -> None:
    """Issue #9: per-domain state must not grow with every domain ever seen."""
    q = WorkQueue()
    for i in range(1000):
        q.add(E(f"m{i}", f"d{i}.test"), 0.0, 0.0)
    for i in range(1000):
        ref = q.take(f"d{i}.test")
        assert ref is not None
        q.done(ref, retry_at=None, now=1.0)
    q.add(E("busy", "busy.test"), 0.0, 0.0)
    q.domain("open.test").connections = 1
    assert q.suspend("down.test", until=100.0) == []
    gone = q.forget_idle_domains(now=2.0)
    assert len(gone) == 1000 and not {"busy.test", "open.test", "down.test"} & set(gone)
    assert q.forget_idle_domains(now=2.0) == []
    assert q.forget_idle_domains(now=100.0) == ["down.test"]  # its suspension is over
    assert q.take("busy.test") == E("busy", "busy.test")


def test_a_paused_domain_starts_no_connection_and_keeps_its_entries_ready() -> None:
    q = WorkQueue()
    for i in range(3):
        q.add(E(f"p{i}", "paced.test"), due=0.0, now=0.0)
    q.release_due(0.0)
    q.pause("paced.test", 10.0, "rate")
    assert q.paused("paced.test") == "rate"
    assert q.connections_wanted("paced.test", 10, 100) == 0
    assert len(q.domain("paced.test").ready) == 3  # nothing deferred
    assert q.next_due() == 10.0
    assert "paced.test" not in q.release_due(9.9)
    assert "paced.test" in q.release_due(10.0)
    assert q.paused("paced.test") is None
    assert q.connections_wanted("paced.test", 10, 100) == 1


# -- the start-up backlog (rows of spool.compact) against the same entries added one by one


def twin_queues(entries: list[tuple[str, float]], now: float) -> tuple[WorkQueue, WorkQueue]:
    """Queue A gets the entries as objects (as before the backlog existed), queue B as the
    rows of a start-up index."""
    a, b = WorkQueue(), WorkQueue()
    for n, due in sorted(entries):
        a.add(EntryRef(n, n.rpartition("@")[2], due), due, now, born=id_time(n[:29]))
    assert b.add_backlog(index_of(entries), now) == len(entries)
    return a, b


def same(a: WorkQueue, b: WorkQueue) -> None:
    assert len(a) == len(b) and a.counts() == b.counts()
    assert a.next_due() == b.next_due()
    assert a.entries() == b.entries()
    assert a.depths() == b.depths()
    assert sorted(a.names()) == sorted(b.names())
    assert a.entries(limit=3) == b.entries(limit=3)
    assert sorted(a.ready_domains()) == sorted(b.ready_domains())


@pytest.mark.parametrize("seed", range(40))
def test_a_backlog_behaves_exactly_like_the_same_entries_added_one_by_one(seed: int) -> None:
    rng = random.Random(seed)
    now = 1_000.0
    domains = ["a.test", "b.test", "c.test"]
    entries = [
        (
            row_name(i, rng.choice(domains), at=i // 3),
            now + rng.choice([-5.0, 0.0, rng.uniform(1, 500)]),
        )
        for i in range(60)
    ]
    a, b = twin_queues(entries, now)
    same(a, b)
    taken: list[EntryRef] = []
    for _ in range(150):
        op = rng.random()
        d = rng.choice(domains)
        if op < 0.35:
            ea, eb = a.take(d), b.take(d)
            assert ea == eb
            if ea is not None:
                taken.append(ea)
        elif op < 0.55 and taken:
            e = taken.pop(rng.randrange(len(taken)))
            r = rng.random()
            if r < 0.2:
                a.untake(e), b.untake(e)
            else:
                retry = None if r < 0.6 else now + rng.uniform(1, 300)
                a.done(e, retry_at=retry, now=now), b.done(e, retry_at=retry, now=now)
        elif op < 0.62:
            until = now + rng.uniform(1, 200)
            assert a.hold(d, until) == b.hold(d, until)
        elif op < 0.67:
            assert a.unhold(d, now) == b.unhold(d, now)
        elif op < 0.72:
            which = rng.choice([d, None])
            assert a.flush(which, now) == b.flush(which, now)
        elif op < 0.77:
            pick = set(rng.sample(sorted(n for n, _ in entries), 4))
            got_a, busy_a = a.extract(pick)
            got_b, busy_b = b.extract(pick)
            assert sorted(map(str, got_a)) == sorted(map(str, got_b)) and busy_a == busy_b
            taken += got_a
        elif op < 0.80:
            until = now + rng.uniform(1, 100)
            assert a.suspend(d, until) == b.suspend(d, until)
        else:
            nxt = a.next_due()
            now = max(now, nxt) if nxt is not None and rng.random() < 0.7 else now + 1.0
            assert a.release_due(now) == b.release_due(now)
        for n, _ in entries[:5]:
            assert (n in a) == (n in b)
        same(a, b)
    a.refresh_oldest(), b.refresh_oldest()
    assert a.depths() == b.depths()


def test_backlog_entries_are_made_only_when_taken_and_then_known_like_others() -> None:
    names = [row_name(i, "x.test") for i in range(3)]
    q = WorkQueue()
    assert q.add_backlog(index_of([(n, 0.0) for n in names]), now=1.0) == 3
    assert q._known == {}  # rows, not objects
    assert q.counts() == (3, 0, 0) and names[1] in q and len(q) == 3
    assert not q.add(EntryRef(names[1], "x.test", 0.0), 0.0, 1.0)  # known already
    e = q.take("x.test")
    assert e == EntryRef(names[0], "x.test", 0.0) and names[0] in q._known
    q.done(e, retry_at=None, now=2.0)
    assert names[0] not in q and len(q) == 2
    with pytest.raises(RuntimeError):
        q.add_backlog(index_of([]), now=1.0)


def test_a_backlog_skips_names_queued_already_and_honours_holds_and_suspensions() -> None:
    names = [row_name(i, d) for i, d in enumerate(["h.test", "s.test", "x.test", "x.test"])]
    q = WorkQueue()
    q.add(EntryRef(names[3], "x.test", 0.0), 0.0, 1.0)  # re-taken by intake first
    q.hold("h.test", until=100.0)
    q.domain("s.test").suspended_until = 50.0
    assert q.add_backlog(index_of([(n, 0.0) for n in names]), now=1.0) == 3
    assert len(q) == 4 and q.take("h.test") is None and q.take("s.test") is None
    assert q.next_due() == 50.0
    assert q.release_due(50.0) == {"s.test"} and q.take("s.test") is not None
    assert q.unhold("h.test", now=51.0) and q.take("h.test") is not None
    assert [e.name for e in q.extract({names[2]})[0]] == [names[2]]
    assert [q.take("x.test"), q.take("x.test")] == [EntryRef(names[3], "x.test", 0.0), None]


def test_a_million_rows_due_at_once_are_released_in_batches() -> None:
    from engine.sched import queue as queue_module

    q = WorkQueue()
    n = queue_module.RELEASE_BATCH + 10
    q.add_backlog(index_of([(row_name(i), 5.0) for i in range(n)]), now=1.0)
    assert q.release_due(5.0) == {"a.test"}
    assert len(q.domain("a.test").ready) == queue_module.RELEASE_BATCH
    assert q.next_due() == 5.0  # the rest is due: the dispatcher comes back at once
    q.release_due(5.0)
    assert len(q.domain("a.test").ready) == n and q.next_due() is None


def test_pauses_for_one_reason_can_end_early() -> None:
    q = WorkQueue()
    for domain in ("warm.test", "paced.test"):
        q.add(E("x", domain), due=0.0, now=0.0)
    q.release_due(0.0)
    q.pause("warm.test", 86400.0, "warmup")
    q.pause("paced.test", 10.0, "rate")
    assert q.unpause("warmup") == ["warm.test"]
    assert q.paused("warm.test") is None and q.paused("paced.test") == "rate"
    assert q.connections_wanted("warm.test", 10, 100) == 1
    assert "warm.test" in q.ready_domains()
