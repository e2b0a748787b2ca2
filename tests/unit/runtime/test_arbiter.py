"""engine.runtime.arbiter: the supervisor's answers to lease and rate requests."""

from __future__ import annotations

from typing import Any

import pytest

from engine.runtime.arbiter import Arbiter


class Sent:
    def __init__(self) -> None:
        self.msgs: list[tuple[Any, ...]] = []

    def __call__(self, k: int, *msg: Any) -> None:
        self.msgs.append((k, *msg))


def test_site_slots_are_granted_contended_and_freed_when_a_worker_dies() -> None:
    sent = Sent()
    a = Arbiter(sent, monotonic=lambda: 0.0)
    a.on_message(0, ("acquire", 1, "(mx1|mx2).site.test", 1))
    a.on_message(1, ("acquire", 1, "(mx1|mx2).site.test", 1))
    assert sent.msgs == [(0, "grant", 1), (0, "contend", "(mx1|mx2).site.test")]
    a.worker_gone(0)
    assert sent.msgs[-1] == (1, "grant", 1)
    a.on_message(1, ("release", "(mx1|mx2).site.test"))
    a.on_message(1, ("acquire", 2, "x", 1))
    a.on_message(1, ("acquire", 3, "x", 1))
    a.on_message(1, ("cancel", 3, "x"))
    a.on_message(1, ("release", "x"))
    assert sent.msgs[-1] == (1, "grant", 2)  # the cancelled request got nothing


def test_rate_requests_get_instants_and_unused_ones_come_back() -> None:
    sent = Sent()
    now = [10.0]
    a = Arbiter(sent, monotonic=lambda: now[0])
    a.on_message(0, ("rate", 1, ["s#msg"], [[4.0, 1.0, 1]], 3))
    k, kind, req, times, retry_at = sent.msgs[-1]
    assert (k, kind, req) == (0, "rate_grant", 1)
    assert times == pytest.approx([10.0, 10.25, 10.5]) and retry_at == 10.0
    a.on_message(0, ("rate_back", ["s#msg"], [10.5]))
    a.on_message(1, ("rate", 1, ["s#msg"], [[4.0, 1.0, 1]], 1))
    assert sent.msgs[-1][3] == pytest.approx([10.5])


def test_in_use_is_the_most_slots_held_since_last_asked() -> None:
    a = Arbiter(Sent(), monotonic=lambda: 0.0)
    assert a.in_use("s") is None  # never taken
    for req in (1, 2, 3):
        a.on_message(0, ("acquire", req, "s", 5))
    a.on_message(0, ("release", "s"))
    a.on_message(0, ("release", "s"))
    assert a.in_use("s") == 3
    assert a.in_use("s") == 1  # now: the one still held


def test_quota_is_granted_given_back_and_kept_when_a_worker_dies() -> None:
    sent = Sent()
    a = Arbiter(sent, monotonic=lambda: 0.0)
    a.on_message(0, ("quota", 1, "ip1", 20000, 10, 6))
    a.on_message(1, ("quota", 1, "ip1", 20000, 10, 6))
    assert sent.msgs == [(0, "quota_grant", 1, 6, 6), (1, "quota_grant", 1, 4, 10)]
    a.on_message(0, ("quota_back", "ip1", 20000, 6, 5))  # sent one of six
    assert a.quota.used("ip1", 20000) == 5
    a.worker_gone(1)  # its four may have been sent: they stay used, nothing is pending
    a.on_message(0, ("quota", 2, "ip1", 20000, 10, 6))
    assert sent.msgs[-1] == (0, "quota_grant", 2, 5, 5)
    a.on_message(0, ("quota", 3, "ip1", 20000, 10, 6))
    assert sent.msgs[-1] == (0, "quota_grant", 3, 0, 5)
