"""A clock for unit tests: engine.clock.Clock whose time moves only when the test says.

Responsible for: `FakeClock`, wall and monotonic time from one settable value.
Not responsible for: anything asynchronous (tests that need timers use real loops with
short deadlines).
"""

from __future__ import annotations

__all__ = ["FakeClock"]


class FakeClock:
    """`wall()` is `now`; `monotonic()` counts from the start (as a real one would not
    equal the wall clock)."""

    def __init__(self, now: float) -> None:
        self.start = self.now = now

    def wall(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now - self.start

    def advance(self, seconds: float) -> None:
        self.now += seconds
