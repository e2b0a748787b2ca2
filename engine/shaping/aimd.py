"""The AIMD controller: a site's connection and rate limits follow what its receiver takes.

Responsible for: one site's learned limits (`AimdState`), the evidence of the current
window (`Window`: deliveries, replies, throttling replies, connections in use), and the
verdict when a window closes (`judge`): cut multiplicatively when the share of
throttling replies reaches `throttle_share`, raise additively when a window was clean and
the limit was in use, hold otherwise.  Pure: time is passed in, nothing is stored.
Not responsible for: which replies are throttling (engine.shaping.replies), named
replies (engine.shaping.rules), combining limits with rules or persisting them
(engine.shaping.adaptive, .store), or enforcing them (the supervisor's arbiter).

Design (TCP's AIMD, Postfix's and Netflix's concurrency limits, capability-anchors §8):
  * Cut: connections times decrease, at least one fewer (Netflix AIMDLimit), never below
    `floor_connections`.  The rate is cut only when some throttling reply came inside a
    transaction: a 421 at the greeting says "fewer connections", a 451 at RCPT says
    "fewer messages".  The new rate is RATE_KEEP (0.9) times the rate the receiver
    *accepted* in the window (deliveries / seconds), or times the rate limit if that was
    lower: what a throttling receiver accepts is about what it takes, so this converges
    on it instead of halving below it.  With no configured rate ("unlimited") this is
    where a rate limit first comes from.
  * A heavily throttled window is judged early (after a fifth of it, at least 1 s:
    `Window.alarming`), not at its end.
  * Raise: +increase_connections when the window used at least half the connections
    (Netflix: in-flight ≥ limit/2; Postfix never raises a limit that is not in use), and
    +increase_rate times the site's maximum rate when it delivered at ≥ 80 % of its rate.  A
    site with no maximum rate steps by `increase_rate` times the delivery rate it had when
    last cut (`scale`): a step proportional to what the receiver once took, e.g. +10/s
    per clean minute for a receiver that started throttling at 100/s.
  * Clean means a throttling share of at most half `throttle_share` (hysteresis: a
    share between half and the whole holds still, so the limit does not flap).  The rate
    looks at throttling inside transactions only: a site refusing one connection in
    twenty must not keep its rate from climbing back, and connections are what it is
    saying something about.
  * A window needs `min_samples` before it may cut (3 throttled of 5 is noise), not to
    raise: at the floor of 1 message a minute a window holds one message, and it must
    still find its way back.  A throttled window short of samples carries on into the
    next (up to MAX_CARRY windows), so a slow site is still cut when it keeps being
    throttled.
  * A limit back at the site's maximum is stored as None ("the maximum"), so a maximum
    raised on reload applies at once.  Without a maximum rate the learned rate stays: a
    limit that does not bind costs nothing, and lifting it would send at full speed
    into the receiver that taught it.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, replace

from engine.config.shaping import ShapingSettings

__all__ = [
    "MAX_CARRY",
    "RATE_BINDING",
    "RATE_KEEP",
    "AimdState",
    "Ceiling",
    "Judgement",
    "Verdict",
    "Window",
]

# A window whose throttled share is high but whose samples are few keeps counting for up
# to this many window lengths (10 minutes with the default 1 m window); older evidence
# says little about the receiver now.
MAX_CARRY = 10
# A throttled window may be judged early (Window.alarming), after this share of its
# length and at least EARLIEST seconds.
EARLY_SHARE = 0.2
EARLIEST = 1.0
# A throttled window cuts the rate to this share of what the receiver accepted in it.
# Simulated (tests/unit/shaping/test_adaptive.py's receiver, decrease 0.7), against
# cutting to `decrease` times the accepted rate: 91 % instead of 86 % of what a 100/s
# receiver takes, with 9.9 instead of 16.2 throttling replies per 1 000 delivered (a
# 200/s receiver: 87 % either way, 6.4 instead of 11.7 per 1 000).
RATE_KEEP = 0.9
# The rate limit is "in use" when the site delivered at least this share of it: GCRA
# grants in batches and connections open and close, so 100 % is never reached.
RATE_BINDING = 0.8


@dataclass(frozen=True, slots=True)
class Ceiling:
    """The most a site may have: its configured (or provider) maximum connections and
    rate in messages per second (None: unlimited).  May change on reload."""

    connections: int
    rate: float | None


@dataclass(frozen=True, slots=True)
class AimdState:
    """What the controller learned about a site; None is "the maximum (Ceiling)"."""

    connections: int | None = None
    rate: float | None = None  # messages per second
    scale: float | None = None  # msgs/s delivered when last cut: the step without a max rate
    changed: float = 0.0  # when a limit last changed (wall clock)
    reason: str = ""

    @property
    def at_ceiling(self) -> bool:
        return self.connections is None and self.rate is None

    def limits(self, ceiling: Ceiling) -> tuple[int, float | None]:
        """(connections, rate) this state allows under `ceiling`, before floors."""
        conns = ceiling.connections
        if self.connections is not None:
            conns = min(conns, self.connections)
        return conns, _min_rate(ceiling.rate, self.rate)


@dataclass(slots=True)
class Window:
    """The evidence since `start`."""

    start: float
    delivered: int = 0
    replies: int = 0  # non-2xx replies, throttling or not
    throttled: int = 0  # throttling replies
    throttled_txn: int = 0  # ... of which inside a transaction (rate evidence)
    in_use: int | None = None  # most connections the site held, when told

    @property
    def samples(self) -> int:
        return self.delivered + self.replies

    def add(
        self, delivered: int, replies: int, throttled: int, throttled_txn: int, in_use: int | None
    ) -> None:
        self.delivered += delivered
        self.replies += replies
        self.throttled += throttled
        self.throttled_txn += throttled_txn
        if in_use is not None:
            self.in_use = in_use if self.in_use is None else max(self.in_use, in_use)

    def due(self, now: float, length: float) -> bool:
        return now - self.start >= length

    def alarming(self, now: float, s: ShapingSettings) -> bool:
        """Enough throttling to cut before the window is over: `min_samples` with at
        least `throttle_share` throttling, after a fifth of the window (at least 1 s).
        A receiver throttling half of a 1 000/s burst would otherwise get 60 000
        throttled attempts before a 1 min window is judged; the fifth gives a cut time
        to take effect (TCP cuts once per round trip, not per loss)."""
        if now - self.start < max(EARLIEST, s.window * EARLY_SHARE):
            return False
        samples = self.samples
        return samples >= s.min_samples and self.throttled >= s.throttle_share * samples


class Verdict(enum.Enum):
    DECREASE = "decrease"  # the limits went down
    INCREASE = "increase"  # the limits went up
    HOLD = "hold"  # the window is over; limits as they were (the state may be tidied)
    CARRY = "carry"  # too few samples to cut yet: keep counting in this window


@dataclass(frozen=True, slots=True)
class Judgement:
    verdict: Verdict
    state: AimdState  # the state to keep (DECREASE/INCREASE: with `changed`, `reason`)


def judge(
    state: AimdState, w: Window, ceiling: Ceiling, s: ShapingSettings, now: float
) -> Judgement:
    """The verdict on a window that is due (`w.due(now, s.window)`)."""
    samples = w.samples
    if samples == 0:
        return Judgement(Verdict.HOLD, state)
    elapsed = max(now - w.start, EARLIEST)
    share = w.throttled / samples
    if share >= s.throttle_share:
        if samples >= s.min_samples:
            return _decrease(state, w, ceiling, s, now, elapsed)
        if now - w.start < MAX_CARRY * s.window:
            return Judgement(Verdict.CARRY, state)
        return Judgement(Verdict.HOLD, state)
    return _increase(state, w, ceiling, s, now, elapsed)


def _decrease(
    state: AimdState, w: Window, ceiling: Ceiling, s: ShapingSettings, now: float, elapsed: float
) -> Judgement:
    conns, rate = state.limits(ceiling)
    new_conns = conns
    if conns > s.floor_connections:
        new_conns = max(s.floor_connections, min(conns - 1, math.floor(conns * s.decrease)))
    new_rate, scale = rate, state.scale
    accepted = w.delivered / elapsed
    if w.throttled_txn:
        base = _min_rate(rate, accepted if accepted > 0 else None)
        if base is not None:
            # What the receiver accepted while it throttled (or the limit, if lower) is
            # about what it takes: go just under it (RATE_KEEP), not a `decrease` share
            # of it.  Nothing accepted: `decrease` of the limit.
            keep = base * RATE_KEEP if accepted > 0 else base * s.decrease
            new_rate = max(s.floor_rate, keep)
            if rate is not None:
                new_rate = min(rate, new_rate)  # at the floor already: stays
            scale = accepted if accepted > 0 else (scale or rate)
    if (new_conns, new_rate) == (conns, rate):
        return Judgement(Verdict.HOLD, state)
    reason = (
        f"{w.throttled} of {w.samples} replies throttling ({w.throttled / w.samples:.0%}) "
        f"in {elapsed:.0f}s, {accepted:.3g} msg/s accepted"
    )
    kept = _normalise(AimdState(new_conns, new_rate, scale, now, reason), ceiling)
    return Judgement(Verdict.DECREASE, kept)


def _increase(
    state: AimdState, w: Window, ceiling: Ceiling, s: ShapingSettings, now: float, elapsed: float
) -> Judgement:
    conns, rate = state.limits(ceiling)
    new_conns, new_rate = conns, rate
    clean = s.throttle_share / 2
    used = w.in_use if w.in_use is not None else (conns if w.samples >= s.min_samples else 0)
    if state.connections is not None and 2 * used >= conns and w.throttled <= clean * w.samples:
        new_conns = min(ceiling.connections, conns + s.increase_connections)
    accepted = w.delivered / elapsed
    rate_clean = w.throttled_txn <= clean * w.samples
    if (
        state.rate is not None
        and rate is not None
        and rate_clean
        and accepted >= RATE_BINDING * rate
    ):
        step = s.increase_rate * (ceiling.rate or state.scale or rate)
        new_rate = rate + step if ceiling.rate is None else min(ceiling.rate, rate + step)
    tidy = _normalise(state, ceiling)
    if (new_conns, new_rate) == (conns, rate):
        return Judgement(Verdict.HOLD, tidy)
    reason = (
        f"clean window: {w.throttled} of {w.samples} replies throttling, "
        f"{accepted:.3g} msg/s accepted, {used} of {conns} connections in use"
    )
    kept = _normalise(AimdState(new_conns, new_rate, state.scale, now, reason), ceiling)
    return Judgement(Verdict.INCREASE, kept)


def _normalise(state: AimdState, ceiling: Ceiling) -> AimdState:
    """Limits at or above the maximum become None ("the maximum")."""
    conns = state.connections
    if conns is not None and conns >= ceiling.connections:
        conns = None
    rate = state.rate
    if rate is not None and ceiling.rate is not None and rate >= ceiling.rate:
        rate = None
    scale = None if conns is None and rate is None else state.scale
    if (conns, rate, scale) == (state.connections, state.rate, state.scale):
        return state
    return replace(state, connections=conns, rate=rate, scale=scale)


def _min_rate(a: float | None, b: float | None) -> float | None:
    """The lower of two rates where None is unlimited."""
    if a is None:
        return b
    return a if b is None else min(a, b)
