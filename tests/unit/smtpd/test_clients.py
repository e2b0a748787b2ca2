"""The supervisor's per-client session count."""

from __future__ import annotations

from engine.smtpd.clients import ClientTable


def test_sessions_are_counted_over_workers_up_to_the_limit() -> None:
    t = ClientTable()
    assert t.open("192.0.2.1", 0, 2) and t.open("192.0.2.1", 1, 2)
    assert not t.open("192.0.2.1", 0, 2)
    assert t.open("192.0.2.2", 0, 2)
    t.close("192.0.2.1", 1)
    assert t.count("192.0.2.1") == 1 and t.open("192.0.2.1", 1, 2)


def test_a_dead_worker_takes_its_sessions_along_and_nothing_leaks() -> None:
    t = ClientTable()
    t.open("a", 0, 5)
    t.open("a", 1, 5)
    t.open("b", 1, 5)
    t.drop_worker(1)
    assert t.count("a") == 1 and t.count("b") == 0 and len(t) == 1
    t.close("a", 0)
    t.close("a", 0)  # twice, or for a worker that is gone: no harm
    t.close("zzz", 3)
    assert len(t) == 0
