import random

import pytest

from engine.sched.backoff import is_expired, plan_retry, retry_delay

SCHEDULE = (300.0, 600.0, 1200.0)


def test_schedule_steps_then_repeats_last() -> None:
    rng = random.Random(1)
    assert [retry_delay(n, SCHEDULE, 0.0, rng) for n in (1, 2, 3, 4, 9)] == [
        300,
        600,
        1200,
        1200,
        1200,
    ]


def test_attempts_start_at_one() -> None:
    with pytest.raises(ValueError):
        retry_delay(0, SCHEDULE, 0.0, random.Random(1))


def test_jitter_spreads_a_burst_within_bounds() -> None:
    rng = random.Random(7)
    delays = [retry_delay(1, SCHEDULE, 0.2, rng) for _ in range(10_000)]
    assert min(delays) >= 240 and max(delays) <= 360
    # 10 000 messages deferred together come back spread, not in one second.
    assert len({int(d) for d in delays}) > 100


def test_expiry_is_age_based() -> None:
    assert not is_expired(now=1000.0, created=0.0, max_age=1000.5)
    assert is_expired(now=1000.5, created=0.0, max_age=1000.5)


def test_retry_past_deadline_is_moved_to_the_deadline_and_marked_final() -> None:
    r = plan_retry(
        now=100.0,
        created=0.0,
        attempts=1,
        schedule=(300.0,),
        jitter=0.0,
        max_age=250.0,
        rng=random.Random(1),
    )
    assert (r.at, r.final) == (250.0, True)
    r = plan_retry(
        now=100.0,
        created=0.0,
        attempts=1,
        schedule=(30.0,),
        jitter=0.0,
        max_age=250.0,
        rng=random.Random(1),
    )
    assert (r.at, r.final) == (130.0, False)
