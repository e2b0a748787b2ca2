"""bench.backpressure_mix: the mix's grammar, and decisions that are seeded, stable per
key, in the shares asked for, and the same whichever engine asks."""

from __future__ import annotations

import pytest

from bench.backpressure_mix import DEFAULT_MIX, Decider, Mix, Rule, parse_mix


def test_the_default_mix_reads_as_the_issue_says() -> None:
    mix = parse_mix(DEFAULT_MIX)
    assert mix.rules == (
        Rule(451, "rcpt", 0.05),
        Rule(421, "connect", 0.01),
        Rule(550, "rcpt", 0.02),
    )
    assert (mix.slow_share, mix.slow_seconds) == (0.01, 2.0)
    assert parse_mix(mix.describe()) == mix
    assert Rule(451, "rcpt", 0.05).reply == b"451 4.7.1 Try again later (bench)\r\n"


@pytest.mark.parametrize(
    ("spec", "why"),
    [
        ("451rcpt=5%", "cannot read '451rcpt=5%'"),
        ("451@helo=5%", "phase must be one of"),
        ("250@rcpt=5%", "only 4xx and 5xx"),
        ("451@rcpt=60%,550@rcpt=50%", "rcpt shares add up to more than 100%"),
        ("slow=5", "cannot read 'slow=5'"),
    ],
)
def test_a_bad_mix_names_what_is_wrong(spec: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_mix(spec)


def test_milliseconds_and_an_empty_mix() -> None:
    assert parse_mix("slow=10%:500ms") == Mix((), 0.1, 0.5)
    assert parse_mix("") == Mix()


RCPTS = [f"user{i}@dom{i % 50:03d}.test" for i in range(20_000)]


def test_shares_are_what_the_mix_asks_and_the_slices_are_disjoint() -> None:
    d = Decider(parse_mix(DEFAULT_MIX), seed=1)
    replies = [d.rcpt(r, 1) for r in RCPTS]
    n = len(RCPTS)
    temp = sum(1 for x in replies if x is not None and x.startswith(b"451"))
    perm = sum(1 for x in replies if x is not None and x.startswith(b"550"))
    assert abs(temp / n - 0.05) < 0.006 and abs(perm / n - 0.02) < 0.004
    slow = sum(1 for r in RCPTS if d.data(r, 1)[1] == 2.0)
    assert abs(slow / n - 0.01) < 0.003
    refused = sum(1 for i in range(1, n + 1) if d.connect("127.0.0.2", i) is not None)
    assert abs(refused / n - 0.01) < 0.003


def test_a_missing_user_stays_missing_and_a_retry_gets_fresh_odds() -> None:
    d = Decider(parse_mix("451@rcpt=30%,550@rcpt=20%"), seed=3)
    missing = [r for r in RCPTS[:500] if d.rcpt(r, 1) == Rule(550, "rcpt", 0.2).reply]
    assert missing and all(d.rcpt(r, k) == d.rcpt(r, 1) for r in missing for k in range(2, 6))
    later = [r for r in RCPTS[:500] if d.rcpt(r, 1) == Rule(451, "rcpt", 0.3).reply]
    assert later and any(d.rcpt(r, 2) is None for r in later)  # most get through on retry


def test_decisions_depend_on_the_seed_and_the_key_only() -> None:
    mix = parse_mix(DEFAULT_MIX)
    a, b, c = Decider(mix, 1), Decider(mix, 1), Decider(mix, 2)
    forward = [a.rcpt(r, 1) for r in RCPTS[:2000]]
    backward = [b.rcpt(r, 1) for r in reversed(RCPTS[:2000])][::-1]  # another asking order
    assert forward == backward
    assert forward != [c.rcpt(r, 1) for r in RCPTS[:2000]]
