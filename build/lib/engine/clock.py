"""Time as a value passed in.

Responsible for: the `Clock` protocol and the real `SystemClock`.
Not responsible for: sleeping or scheduling; decisions take `now` as an argument
(KumoMTA's timeq returns "sleep N" instead of sleeping), so tests use a fake clock.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def wall(self) -> float:
        """Seconds since the epoch (for spool mtimes, logs, max_age)."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards (for caches, timeouts)."""
        ...


class SystemClock:
    def wall(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()
