"""The AIMD controller: a site's connection and rate limits follow what its receiver takes.

Responsible for: one site's learned limits (`AimdState`), the evidence of the current
window (`Window`: deliveries, replies, throttling replies, connections in use), and the
verdict when a window closes (`judge`): cut multiplicatively when the share of
throttling replies reaches `throttle_share`, raise additively when a window was clean and
the limit was in use, hold otherwise.  Pure: time is passed in, nothing is stored.
Not responsible for: which replies are throttling (engine.shaping.replies), named
replies (engine.shaping.rules), combining limits with rules or persisting them
(engine.shaping.adaptive, .store), or enforcing them (the supervisor's arbiter).

Design (TCP's AIMD and CUBIC, Postfix's and Netflix's concurrency limits,
capability-anchors §8):
  * Cut connections when the share of throttling replies among messages reaches
    `throttle_share` (times decrease, at least one fewer: Netflix AIMDLimit), unless
    the throttling came inside transactions while the rate limit bound (then the rate
    alone is cut: the limit that bound is the one the receiver objects to); or when
    refusals at connect do among the connections tried (`refusing`: one fewer, as a cap
    says exactly "no more"); never below `floor_connections`.  A count the site refused
    at is not reached again for REFUSAL_MEMORY windows.
  * Cut the rate only when some throttling reply came inside a transaction: a 421 at
    the greeting says "fewer connections", a 451 at RCPT says "fewer messages".  The new
    rate is the limit at which the receiver takes what we send (`limit_taken`: the
    limit less the share refused) when the limit bound, else RATE_KEEP (0.9) times what
    was accepted, never more than `decrease` off the limit in force in one verdict.  With no
    configured rate ("unlimited") this is where a rate limit first comes from.  That
    limit is kept (`scale`, CUBIC's W_max), unless the cut was held to the one-step
    bound: evidence saying less than that is no measure of the receiver.
  * A heavily throttled window is judged early (after a fifth of it, at least 1 s:
    `Window.alarming`), not at its end; the window after a cut only after twice that,
    and its rate only while at least half the cut's throttling remains.
  * Raise connections by `increase_connections` when the window used at least half of
    them (Netflix: in-flight ≥ limit/2; Postfix never raises a limit that is not in use)
    and none was refused.  Raise the rate when it delivered at ≥ 80 % of it, by a step of
    `increase_rate` times the site's maximum rate (or `scale` without one): back up to
    `scale` at full steps, beyond it probing from a quarter step, doubling each clean
    window (CUBIC's concave then convex growth).  A probe that is throttled while the
    receiver still takes about `scale` goes back to the limit it takes, not below.
  * Clean means a throttling share of at most half `throttle_share` (hysteresis: a
    share between half and the whole holds connections still, so they do not flap; the
    rate is trimmed to the limit it takes, so it does not sit just above the receiver's).
    The rate looks at throttling inside transactions only: a site refusing one
    connection in twenty must not keep its rate from climbing back.
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
# Refusals at connect that make a window cut connections (with the share, `refusing`):
# one 421 can be a receiver restarting; Postfix's qmgr also cuts at its first failed
# cohort, but a cohort there is a whole concurrency step.
MIN_REFUSED = 2
# Connections a site refused at are not tried again for this many windows: a receiver
# capped at 4 refuses the fifth every time, and raising to it after each clean window
# cost a burst of 421s and a worker's ready mail deferred each time (bench/shaping.py:
# 5 cycles in a 110 s campaign).  After it, one probe tells whether the cap moved.
REFUSAL_MEMORY = 10
# Workers report every 0.25 s (engine.runtime.worker's METRICS_INTERVAL): a window whose
# newest report is at most this old is still being reported on (Window.elapsed).
REPORT_GAP = 1.0
# A throttled window may be judged early (Window.alarming), after this share of its
# length and at least EARLIEST seconds.
EARLY_SHARE = 0.2
EARLIEST = 1.0
# A throttled window whose rate limit did not bind cuts the rate to this share of what
# the receiver accepted (`limit_taken`); one whose limit bound, to the limit it takes.
# Simulated before the return to `scale` existed (tests/unit/shaping/test_adaptive.py,
# decrease 0.7), against cutting to `decrease` times the accepted rate: 91 % instead of
# 86 % of what a 100/s receiver takes, with 9.9 instead of 16.2 throttling replies per
# 1 000 delivered (a 200/s receiver: 87 % either way, 6.4 instead of 11.7 per 1 000).
RATE_KEEP = 0.9
# A probe above the limit a receiver took (AimdState.scale) starts at this share of the
# step and doubles each clean window; throttled while it still takes at least
# PROBE_KEEPS of that limit, the limit goes back to the one it takes, not below.
PROBE_FIRST = 0.25
PROBE_KEEPS = 0.95
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
    # The limit (msgs/s) at which the receiver took what was sent when last cut
    # (`limit_taken`, CUBIC's W_max), and the step without a maximum rate.
    scale: float | None = None
    changed: float = 0.0  # when a limit last changed (wall clock)
    reason: str = ""
    probe: int = 0  # clean windows in a row at or above `scale`: the probe step doubles
    refused_at: int | None = None  # connections the site refused at (REFUSAL_MEMORY)
    refused_when: float = 0.0  # ... and when (wall clock)

    def refusal_cap(self, s: ShapingSettings, now: float) -> int | None:
        """Connections not to reach again yet: those the site last refused at, for
        REFUSAL_MEMORY windows after."""
        if self.refused_at is None or now - self.refused_when >= REFUSAL_MEMORY * s.window:
            return None
        return self.refused_at

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
    opened: int = 0  # connections the site let in (greeting and EHLO answered 2xx)
    after_cut: float | None = None  # the throttling share of the window that was cut
    end: float | None = None  # when the newest evidence was reported (None: now)

    @property
    def samples(self) -> int:
        return self.delivered + self.replies

    @property
    def refused(self) -> int:
        """Throttling replies at connect (a 421 greeting): "fewer connections"."""
        return self.throttled - self.throttled_txn

    def add(
        self,
        delivered: int,
        replies: int,
        throttled: int,
        throttled_txn: int,
        in_use: int | None,
        opened: int = 0,
        at: float | None = None,
    ) -> None:
        """`at`: when this evidence was reported (it covers up to then)."""
        if at is not None:
            self.end = at if self.end is None else max(self.end, at)
        self.delivered += delivered
        self.replies += replies
        self.throttled += throttled
        self.throttled_txn += throttled_txn
        self.opened += opened
        if in_use is not None:
            self.in_use = in_use if self.in_use is None else max(self.in_use, in_use)

    def due(self, now: float, length: float) -> bool:
        return now - self.start >= length

    def elapsed(self, now: float) -> float:
        """The seconds the evidence covers (at least EARLIEST): up to the newest report
        while reports are coming in, not up to `now`.  Workers report 4 times a second,
        so a window judged early (2 s) between reports looked up to 12 % slower than it
        was (bench/shaping.py: a probe taking 193/s looked like 174/s and was cut as a
        receiver taking less).  A site whose reports stopped (its queue drained) is
        judged up to `now`: it delivered nothing since."""
        end = now
        if self.end is not None and now - self.end <= REPORT_GAP:
            end = min(now, self.end)
        return max(end - self.start, EARLIEST)

    def alarming(self, now: float, s: ShapingSettings) -> bool:
        """Enough throttling to cut before the window is over: `min_samples` with at
        least `throttle_share` throttling, after a fifth of the window (at least 1 s).
        A receiver throttling half of a 1 000/s burst would otherwise get 60 000
        throttled attempts before a 1 min window is judged; the fifth gives a cut time
        to take effect (TCP cuts once per round trip, not per loss).

        The window right after a cut (`after_cut`: the share that made it) waits twice
        as long, and is cut early only if its share has not fallen to half of that:
        a receiver remembers what it was sent (a rate over its last second, minute or
        hour), so it throttles for a while after any cut, and a second cut on that
        memory took a receiver taking 200/s from 242/s to 146/s (bench/shaping.py)."""
        wait = max(EARLIEST, s.window * EARLY_SHARE)
        if self.after_cut is not None:
            wait *= 2
        if now - self.start < wait:
            return False
        samples = self.samples
        heavy = samples >= s.min_samples and self.throttled >= s.throttle_share * samples
        if heavy and self.after_cut is not None:
            heavy = self.throttled >= self.after_cut / 2 * samples
        return heavy or refusing(self, s)


def refusing(w: Window, s: ShapingSettings) -> bool:
    """The site refuses connections: at least MIN_REFUSED throttling replies at connect,
    and at least `throttle_share` of the connections tried.  Judged against connections,
    not messages: a receiver capped at 4 connections refusing the fifth 4 times a second
    is 100 % of the extra connections but 2 % of 200 messages a second (bench/shaping.py
    held 5-8 connections against such a cap when connections were judged by messages)."""
    refused = w.refused
    return refused >= MIN_REFUSED and refused >= s.throttle_share * (w.opened + refused)


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
    elapsed = w.elapsed(now)
    throttled = w.throttled >= s.throttle_share * samples
    if w.after_cut is not None and not w.due(now, s.window):
        # Judged early after a cut (for refusals, say): the rate only if the cut is not
        # working (Window.alarming).
        throttled = throttled and w.throttled >= w.after_cut / 2 * samples
    if throttled and samples >= s.min_samples:
        return _decrease(state, w, ceiling, s, now, elapsed, cut_rate=True)
    if refusing(w, s):
        return _decrease(state, w, ceiling, s, now, elapsed, cut_rate=False)
    if throttled:
        if now - w.start < MAX_CARRY * s.window:
            return Judgement(Verdict.CARRY, state)
        return Judgement(Verdict.HOLD, state)
    return _increase(state, w, ceiling, s, now, elapsed)


def _decrease(
    state: AimdState,
    w: Window,
    ceiling: Ceiling,
    s: ShapingSettings,
    now: float,
    elapsed: float,
    *,
    cut_rate: bool,
) -> Judgement:
    conns, rate = state.limits(ceiling)
    new_conns = conns
    # Throttled inside transactions while the rate limit bound: the rate is what the
    # receiver objects to, and cutting it is enough.  Cutting connections too left 3
    # connections delivering 180/s under a 200/s limit against a receiver taking 200/s
    # (bench/shaping.py: 15 s at 90 % of its rate, twice in a campaign).
    rate_bound = cut_rate and w.throttled_txn > 0 and _bound(w, rate, elapsed)
    multiplicative = cut_rate and not rate_bound
    if conns > s.floor_connections and (multiplicative or refusing(w, s)):
        # Refusals at connect alone take one connection off (Postfix's negative feedback
        # of one per failed cohort): a receiver capped at N connections says so exactly,
        # and a multiplicative cut from N + 1 went to N - 2.
        fewer = math.floor(conns * s.decrease) if multiplicative else conns - 1
        new_conns = max(s.floor_connections, min(conns - 1, fewer))
    new_rate, scale = rate, state.scale
    accepted = w.delivered / elapsed
    if cut_rate and w.throttled_txn:
        takes = limit_taken(w, rate, elapsed)
        if takes is not None:
            # To the limit at which the receiver takes what we send when the limit bound
            # (RATE_KEEP under it left a 200/s receiver a window at 180/s after each cut,
            # bench/shaping.py); else, or judged early after a cut (the receiver still
            # counts what came before), RATE_KEEP under it.  Nothing accepted: `decrease`.
            settled = w.after_cut is None or w.due(now, s.window)
            if accepted <= 0:
                keep = takes * s.decrease
            else:
                keep = takes if rate_bound and settled else takes * RATE_KEEP
            if rate is not None:
                # But one verdict takes at most `decrease` off a limit in force: a window
                # judged early, right after a cut, still holds mail sent before the cut
                # took effect and says little about the receiver (bench/shaping.py: a
                # second cut 2 s after the first went from 253/s to 124/s against a
                # receiver taking 200/s, and took 50 s to climb back).
                bounded = keep < rate * s.decrease
                keep = max(keep, rate * s.decrease)
            else:
                bounded = False
            if _overshot(state, rate, takes):
                # Probing above what the receiver took, and it still takes that: back to
                # it, no cut below it and connections as they were (CUBIC returns to
                # W_max; cutting there too made the 200/s receiver's campaign 8 % slower
                # than no shaping at all, bench/shaping.py).
                keep, new_conns, bounded = takes, conns, False
            new_rate = max(s.floor_rate, keep)
            if rate is not None:
                new_rate = min(rate, new_rate)  # at the floor already: stays
            # Never below the limit just set.  And a window whose evidence says less than
            # the one-step bound kept (noise right after a cut) is no measure of the
            # receiver at all: without one, the climb back goes at full steps, not as a
            # probe from here (bench/shaping.py: 115/s kept under a 158/s limit left the
            # site 30 s at 158 against a receiver taking 200; kept as that measure, 181/s
            # probed up for 30 s).
            scale = max(takes, new_rate) if accepted > 0 else (scale or rate)
            if bounded:
                scale = None
    if (new_conns, new_rate) == (conns, rate):
        return Judgement(Verdict.HOLD, state)
    reason = (
        f"{w.throttled} of {w.samples} replies throttling ({w.throttled / w.samples:.0%}) "
        f"in {elapsed:.0f}s, {accepted:.3g} msg/s accepted"
    )
    refused_at, refused_when = state.refused_at, state.refused_when
    if w.refused >= MIN_REFUSED:
        # As many as were held: connections opened under a higher limit before a cut
        # stay open, and the receiver counts them too.
        refused_at, refused_when = max(conns, w.in_use or 0), now
    kept = AimdState(
        new_conns,
        new_rate,
        scale,
        now,
        reason,
        refused_at=refused_at,
        refused_when=refused_when,
    )
    return Judgement(Verdict.DECREASE, _normalise(kept, ceiling))


def _overshot(state: AimdState, rate: float | None, takes: float) -> bool:
    """The rate in force was above the limit the receiver took when last cut (a probe),
    and it still takes nearly that (at least PROBE_KEEPS of it)."""
    known = state.scale
    return known is not None and rate is not None and rate > known and takes >= PROBE_KEEPS * known


def limit_taken(w: Window, rate: float | None, elapsed: float) -> float | None:
    """The rate limit at which the site would have taken all we sent in `w`.

    With a limit that bound (we sent at least RATE_BINDING of it), the limit less the
    share refused inside transactions: a limit is never met exactly (connections open
    and close, instants go unused: 88-97 % of it was delivered in bench/shaping.py), so
    setting the limit to what was accepted would set the next window's deliveries below
    that, and each trim would cut further.  Otherwise (or with no limit) what was
    accepted, the only measure there is.  None: nothing to go on."""
    accepted = w.delivered / elapsed
    sent = (w.delivered + w.throttled_txn) / elapsed
    if rate is not None and _bound(w, rate, elapsed):
        return rate * accepted / sent if accepted > 0 else rate
    if accepted > 0:
        return accepted if rate is None else min(rate, accepted)
    return rate


def _bound(w: Window, rate: float | None, elapsed: float) -> bool:
    """The rate limit was in use: what was sent in `w` (delivered, or refused inside a
    transaction) came to at least RATE_BINDING of it."""
    sent = (w.delivered + w.throttled_txn) / elapsed
    return rate is not None and sent > 0 and sent >= RATE_BINDING * rate


def _increase(
    state: AimdState, w: Window, ceiling: Ceiling, s: ShapingSettings, now: float, elapsed: float
) -> Judgement:
    conns, rate = state.limits(ceiling)
    new_conns, new_rate = conns, rate
    probe, scale = state.probe, state.scale
    clean = s.throttle_share / 2
    used = w.in_use if w.in_use is not None else (conns if w.samples >= s.min_samples else 0)
    # Any refusal at connect holds connections where they are: the receiver said so.
    calm = w.refused == 0 and w.throttled <= clean * w.samples
    cap = state.refusal_cap(s, now)
    below_cap = cap is None or conns + s.increase_connections < cap
    if state.connections is not None and 2 * used >= conns and calm and below_cap:
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
        known = state.scale
        if known is not None and rate < known:
            # Below what the receiver took when last cut: back up to it at full steps,
            # and no further in one step (CUBIC's concave region).
            new_rate, probe = min(known, rate + step), 0
        elif known is not None:
            # At or above it: probe, a quarter step first, doubling with each clean
            # window (CUBIC's convex region): a receiver that still takes what it took
            # costs a few throttled messages, one that now takes twice as much is found
            # within 7 windows (tests/unit/shaping/test_adaptive.py).
            new_rate = rate + min(step, step * PROBE_FIRST * 2**state.probe)
            probe = state.probe + 1
        else:
            new_rate = rate + step
        if ceiling.rate is not None:
            new_rate = min(ceiling.rate, new_rate)
    elif rate is not None and not rate_clean and accepted > 0:
        # Between half and the whole share, inside transactions: the limit is above what
        # the receiver takes by about that share.  Trim it to the limit it takes rather
        # than hold it there (simulated, a receiver taking 200/s: held, the limit sat at
        # 210/s provoking 4.8 % throttling for ever).
        # Only a limit that bound (what was sent was at least RATE_BINDING of it) says
        # how far above the receiver it is: a draining queue sends less, and trimming to
        # what it accepted then cut 214/s to 124/s (bench/shaping.py, the last window).
        takes = limit_taken(w, rate, elapsed)
        if takes is not None and takes < rate and _bound(w, rate, elapsed):
            new_rate = scale = max(s.floor_rate, takes, rate * s.decrease)
    tidy = _normalise(state, ceiling)
    if (new_conns, new_rate) == (conns, rate):
        return Judgement(Verdict.HOLD, tidy)
    if new_rate is not None and rate is not None and new_rate < rate:
        verdict, what = Verdict.DECREASE, "rate trimmed to what the receiver takes"
    else:
        verdict, what = Verdict.INCREASE, "clean window"
    reason = (
        f"{what}: {w.throttled} of {w.samples} replies throttling, "
        f"{accepted:.3g} msg/s accepted, {used} of {conns} connections in use"
    )
    kept = replace(
        state,
        connections=new_conns,
        rate=new_rate,
        scale=scale,
        changed=now,
        reason=reason,
        probe=probe,
    )
    return Judgement(verdict, _normalise(kept, ceiling))


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
