"""Test receivers that throttle like real providers (issue #10 part 3), and their rules.

Responsible for:
  * `ThrottlingServer(max_connections=N, max_rate=M)`: a test Receiver that answers
    `421 4.7.0 too many connections` at connect beyond N sessions at once (the
    Receiver's own connection limit) and `451 4.7.1 rate limited, try again later` at
    RCPT once M recipients were accepted in the last second.
  * `LoadSheddingServer(knee=R)`: a test Receiver that tempfails a share of RCPTs rising
    with the offered load: none up to R RCPTs a second, then linearly to 50 % at 2R (the
    same slope on, at most 90 %).
  * What both count for tests and the bench (`ThrottleStats`): messages accepted in each
    second, and the throttling replies sent.
  * The decisions, pure with time passed in, so they are unit-tested without sockets:
    `SlidingCount`, `RateGate`, `tempfail_share`, `LoadShedder`.
Not responsible for: SMTP sessions, connection counting and the 421 at connect (the
Receiver: tests.support.receiver, .receiver_smtp), or per-recipient behaviours (they
still apply to what these receivers let through: tests.support.receiver_scenarios).

Counting unit: one accepted RCPT is one message (Volley's test campaigns send one
recipient per message); a message is counted in `accepted_per_second` when its data is
accepted, in the second (since the server started) it was.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from typing import Any

from aiosmtpd.smtp import Envelope, Session

from tests.support.receiver import Receiver
from tests.support.receiver_smtp import TOO_MANY_REPLY, Handler, ReceiverSMTP

__all__ = [
    "LOAD_REPLY",
    "RATE_REPLY",
    "TOO_MANY_REPLY",
    "LoadShedder",
    "LoadSheddingServer",
    "RateGate",
    "SlidingCount",
    "ThrottleStats",
    "ThrottlingServer",
    "tempfail_share",
]

RATE_REPLY = "451 4.7.1 rate limited, try again later"
LOAD_REPLY = "451 4.7.1 too much mail from you, try again later"


class SlidingCount:
    """Events within the last `span` seconds."""

    def __init__(self, span: float = 1.0) -> None:
        self.span = span
        self._times: collections.deque[float] = collections.deque()

    def count(self, now: float) -> int:
        while self._times and now - self._times[0] >= self.span:
            self._times.popleft()
        return len(self._times)

    def add(self, now: float) -> None:
        self._times.append(now)


class RateGate:
    """At most `max_rate` admissions in any `span`-second window (sliding)."""

    def __init__(self, max_rate: int, span: float = 1.0) -> None:
        if max_rate < 1:
            raise ValueError("max_rate must be >= 1")
        self.max_rate = max_rate
        self._admitted = SlidingCount(span)

    def admit(self, now: float) -> bool:
        if self._admitted.count(now) >= self.max_rate:
            return False
        self._admitted.add(now)
        return True


def tempfail_share(load: float, knee: float, *, top: float = 0.5, cap: float = 0.9) -> float:
    """The share of RCPTs tempfailed at `load` RCPTs a second: 0 up to `knee`, `top` at
    twice the knee, the same slope beyond, never above `cap`."""
    if load <= knee:
        return 0.0
    return min(cap, top * (load - knee) / knee)


class LoadShedder:
    """Tempfails the share `tempfail_share` gives for the RCPTs offered in the last second.

    Deterministic (error diffusion, not random): each RCPT adds its share to a credit and
    is refused when the credit reaches 1, so over n RCPTs at share p exactly floor(n·p)
    are refused and the tests can assert exact counts.
    """

    def __init__(self, knee: float, *, top: float = 0.5, cap: float = 0.9) -> None:
        if knee <= 0:
            raise ValueError("knee must be above 0")
        self.knee, self.top, self.cap = knee, top, cap
        self._offered = SlidingCount(1.0)
        self._credit = 0.0

    def refuse(self, now: float) -> bool:
        self._offered.add(now)
        self._credit += tempfail_share(
            self._offered.count(now), self.knee, top=self.top, cap=self.cap
        )
        if self._credit >= 1.0:
            self._credit -= 1.0
            return True
        return False


class ThrottleStats:
    """What a throttling receiver counts; thread-safe (loop thread writes, tests read)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._start = time.monotonic()
        self._per_second: collections.Counter[int] = collections.Counter()
        self._refused_rcpts = 0

    def accepted(self, now: float) -> None:
        with self._lock:
            self._per_second[int(now - self._start)] += 1

    def refused_rcpt(self) -> None:
        with self._lock:
            self._refused_rcpts += 1

    @property
    def accepted_per_second(self) -> dict[int, int]:
        """Second since the server started -> messages accepted in it."""
        with self._lock:
            return dict(self._per_second)

    @property
    def refused_rcpts(self) -> int:
        with self._lock:
            return self._refused_rcpts


class _GatedHandler(Handler):
    """The Receiver's hooks, with a gate in front of RCPT and a count after DATA."""

    def __init__(
        self, gate: Callable[[float], bool], stats: ThrottleStats, reply: str, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self._gate = gate
        self._stats = stats
        self._reply = reply

    async def handle_RCPT(
        self,
        server: ReceiverSMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if not self._gate(time.monotonic()):
            self._stats.refused_rcpt()
            return self._reply
        return await super().handle_RCPT(server, session, envelope, address, rcpt_options)

    async def handle_DATA(self, server: ReceiverSMTP, session: Session, envelope: Envelope) -> str:
        reply = await super().handle_DATA(server, session, envelope)
        if reply.startswith("250"):
            self._stats.accepted(time.monotonic())
        return reply


class _Throttling(Receiver):
    """A Receiver whose RCPTs pass `_admit(now)` first."""

    _reply = RATE_REPLY

    def __init__(self, ip: str, port: int, **kwargs: Any) -> None:
        super().__init__(ip, port, **kwargs)
        self.stats = ThrottleStats()
        self._decide_lock = threading.Lock()

    def _admit(self, now: float) -> bool:
        raise NotImplementedError

    def _gate(self, now: float) -> bool:
        with self._decide_lock:
            return self._admit(now)

    def _new_handler(self) -> Handler:
        return _GatedHandler(
            self._gate,
            self.stats,
            self._reply,
            state=self._state,
            pipelining=self._pipelining,
            eightbitmime=self._eightbitmime,
            stall_timeout=self._stall_timeout,
        )

    @property
    def accepted_per_second(self) -> dict[int, int]:
        return self.stats.accepted_per_second

    @property
    def throttling_replies(self) -> int:
        """421s at connect plus 451s at RCPT sent so far."""
        return self.rejected_connections + self.stats.refused_rcpts


class ThrottlingServer(_Throttling):
    """421 beyond `max_connections` sessions, 451 at RCPT beyond `max_rate` a second."""

    def __init__(
        self, ip: str, port: int, *, max_connections: int, max_rate: int, **kwargs: Any
    ) -> None:
        super().__init__(ip, port, max_connections=max_connections, **kwargs)
        self.rate_gate = RateGate(max_rate)

    def _admit(self, now: float) -> bool:
        return self.rate_gate.admit(now)


class LoadSheddingServer(_Throttling):
    """Tempfails a share of RCPTs that rises with the load (see LoadShedder)."""

    _reply = LOAD_REPLY

    def __init__(self, ip: str, port: int, *, knee: float, **kwargs: Any) -> None:
        super().__init__(ip, port, **kwargs)
        self.shedder = LoadShedder(knee)

    def _admit(self, now: float) -> bool:
        return not self.shedder.refuse(now)
