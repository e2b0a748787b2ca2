"""Retry timing: when to try a deferred message again, and when to give up.

Responsible for: the delay after the n-th failed attempt (schedule + jitter), capping the
next attempt at the message's expiry so the last try happens at the deadline, and the
expiry test itself.
Not responsible for: deciding *whether* a failure is temporary (engine.sched.classify)
or writing anything to the spool (engine.runtime.outcome).

Pure functions: `now` and the random source are passed in.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Retry", "is_expired", "plan_retry", "retry_delay"]


def retry_delay(
    attempts: int, schedule: Sequence[float], jitter: float, rng: random.Random
) -> float:
    """Delay after `attempts` failed attempts (1 = the first failure).

    The schedule's last step repeats.  Jitter multiplies by a uniform factor in
    [1 - jitter, 1 + jitter]: 10 000 messages deferred in the same second come back spread
    over a window of 2 * jitter * delay instead of in one burst.
    """
    if attempts < 1:
        raise ValueError("attempts starts at 1")
    base = schedule[min(attempts, len(schedule)) - 1]
    return base * rng.uniform(1.0 - jitter, 1.0 + jitter) if jitter else base


def is_expired(now: float, created: float, max_age: float) -> bool:
    """Postfix's maximal_queue_lifetime rule: a message is expired once it has been
    queued for max_age and an attempt failed temporarily."""
    return now - created >= max_age


@dataclass(frozen=True, slots=True)
class Retry:
    at: float  # epoch seconds of the next attempt
    final: bool  # True when this attempt is the last one before expiry


def plan_retry(
    now: float,
    created: float,
    attempts: int,
    schedule: Sequence[float],
    jitter: float,
    max_age: float,
    rng: random.Random,
) -> Retry:
    """The next attempt after a temporary failure (caller has checked is_expired first).

    A retry that would land after the expiry deadline is moved to the deadline itself,
    so a message gets one last attempt instead of sitting past max_age unnoticed.
    """
    deadline = created + max_age
    at = now + retry_delay(attempts, schedule, jitter, rng)
    if at >= deadline:
        return Retry(at=max(deadline, now), final=True)
    return Retry(at=at, final=False)
