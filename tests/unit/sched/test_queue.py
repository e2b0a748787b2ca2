from dataclasses import dataclass

from engine.sched.queue import EntryState, WorkQueue, ideal_connections


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
