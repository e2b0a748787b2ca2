import pytest

from engine.sched.leases import LeaseTable


def test_limit_holds_across_holders_and_waiters_are_fifo() -> None:
    t = LeaseTable()
    assert t.acquire("d.test", 2, 0, 1)
    assert t.acquire("d.test", 2, 1, 1)
    assert not t.acquire("d.test", 2, 1, 2)
    assert not t.acquire("d.test", 2, 0, 2)
    assert t.held("d.test") == 2
    assert t.release("d.test", 0) == [(1, 2)]
    assert t.release("d.test", 1) == [(0, 2)]
    assert t.held("d.test") == 2
    assert t.holders("d.test") == {0, 1}


def test_new_request_queues_behind_waiters_even_if_a_slot_is_free() -> None:
    t = LeaseTable()
    assert t.acquire("d", 1, 0, 1)
    assert not t.acquire("d", 1, 1, 1)
    grants = t.release("d", 0)
    assert grants == [(1, 1)]
    assert not t.acquire("d", 1, 0, 2)


def test_cancel_withdraws_only_waiting_requests() -> None:
    t = LeaseTable()
    assert t.acquire("d", 1, 0, 1)
    assert not t.acquire("d", 1, 1, 7)
    assert t.cancel("d", 1, 7)
    assert not t.cancel("d", 1, 7)
    assert t.release("d", 0) == []
    assert t.held("d") == 0


def test_dead_holder_frees_slots_for_others() -> None:
    t = LeaseTable()
    for req in range(3):
        assert t.acquire("d", 3, 0, req)
    assert not t.acquire("d", 3, 1, 9)
    assert not t.acquire("d", 3, 0, 10)
    grants = t.drop_holder(0)
    assert grants == [("d", 1, 9)]
    assert t.held("d") == 1 and t.holders("d") == {1}


def test_release_without_lease_is_a_bug() -> None:
    with pytest.raises(KeyError):
        LeaseTable().release("d", 0)


def test_simulated_contention_never_exceeds_limit() -> None:
    import random

    rng = random.Random(3)
    t = LeaseTable()
    held: dict[int, int] = {0: 0, 1: 0, 2: 0}
    waiting: set[tuple[int, int]] = set()
    req = 0
    for _ in range(5000):
        w = rng.randrange(3)
        if held[w] and rng.random() < 0.5:
            held[w] -= 1
            for h, r in t.release("d", w):
                waiting.discard((h, r))
                held[h] += 1
        else:
            req += 1
            if t.acquire("d", 4, w, req):
                held[w] += 1
            else:
                waiting.add((w, req))
        assert sum(held.values()) == t.held("d") <= 4


def test_a_lowered_limit_holds_for_requests_already_waiting() -> None:
    """Adaptive shaping cut the site from 3 to 1 while requests made under 3 waited:
    they are granted under 1."""
    t = LeaseTable()
    assert t.acquire("site", 3, 0, 1) and t.acquire("site", 3, 0, 2) and t.acquire("site", 3, 0, 3)
    assert not t.acquire("site", 3, 1, 1)  # waits under 3
    assert not t.acquire("site", 1, 1, 2)  # the cut: the key's limit is now 1
    assert t.release("site", 0) == []
    assert t.release("site", 0) == []
    assert t.release("site", 0) == [(1, 1)]  # only when none is held
    assert t.held("site") == 1
