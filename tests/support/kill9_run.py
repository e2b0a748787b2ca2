"""The kill -9 run: deliver a batch while SIGKILLing everything at random instants, and
account for every (Message-ID, recipient) pair and every duplicate.

Responsible for: `kill9_run` and its `KillRunReport`, shared by
tests/integration/test_crash_kill9_all.py and bench/soak_kill9.py; it raises only when a
promise is broken (a pair lost, a torn log line that is not the last, a recipient sent
again after its delivery was recorded).

What may be sent twice is counted, not guessed: a transaction the receivers accepted from
an incarnation (they recorded it before the next one was spawned) whose recipient the
spool still listed as pending when that incarnation was killed is *accepted but
unrecorded* — Volley will send it again.  The spool is read at each kill; the receivers'
copies are matched to incarnations at the end, by the same spawn-time rule that tells
which incarnation sent each copy (a copy may be recorded just after the kill).  Every
transaction resent after that kill must be one of those (`accepted_unrecorded_per_kill`);
how many there can be is the README's bound, pipeline depth x open connections plus the
finished entries still on their way to the spool, which the callers assert.
Not responsible for: the process and spool helpers it uses (tests.support.crash), or
asserting what a scenario decides (the caller does, from the report).

Everything stays on loopback.
"""

from __future__ import annotations

import os
import random
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.crash import (
    Pair,
    leftovers,
    log_lines_problems,
    message_id,
    pending_pairs,
    queued_pending,
    received_copies,
    received_pairs,
    restart,
)
from tests.support.internet import MiniInternet, message
from tests.support.net import wait_for
from tests.support.receiver import Receiver
from tests.support.volley import Volley

__all__ = ["KillRunReport", "kill9_run", "kill_run_messages"]


# -- the kill -9 run -----------------------------------------------------------------------
@dataclass(slots=True)
class KillRunReport:
    """What a kill -9 run found. Times are wall clock (epoch s)."""

    seed: int
    messages: int
    pairs: int  # (Message-ID, recipient) pairs that had to arrive
    kills: list[float] = field(default_factory=list)  # when each SIGKILL of everything ended
    restarts: list[float] = field(default_factory=list)  # when each new `volley run` was spawned
    kill_receipts: list[int] = field(default_factory=list)  # pairs received at each kill
    logged_and_queued: list[int] = field(default_factory=list)  # per kill (write-ahead gap)
    torn_tails: list[bool] = field(default_factory=list)  # log ended mid-line at each kill
    duplicates: int = 0  # extra copies, over all (Message-ID, recipient) pairs
    # Transactions received before kill i+1 and sent again after it (one transaction may
    # carry two recipients, so this counts in the unit connections limit).
    resent_per_kill: list[int] = field(default_factory=list)
    in_flight_capacity: int = 0  # most connections open at once (sum of max_connections)
    # Per kill: connections the receivers had open just before it, and transactions they
    # had accepted whose recipients the spool still listed as pending (see the docstring).
    connections_at_kill: list[int] = field(default_factory=list)
    accepted_unrecorded_per_kill: list[int] = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "messages": self.messages,
            "pairs": self.pairs,
            "kills": len(self.kills),
            "kill_receipts": self.kill_receipts,
            "logged_and_queued_at_kill": self.logged_and_queued,
            "torn_log_tails": sum(self.torn_tails),
            "duplicate_pairs": self.duplicates,
            "resent_transactions_per_kill": self.resent_per_kill,
            "resent_transactions": sum(self.resent_per_kill),
            "in_flight_capacity": self.in_flight_capacity,
            "connections_at_kill": self.connections_at_kill,
            "accepted_unrecorded_per_kill": self.accepted_unrecorded_per_kill,
            "seconds": round(self.seconds, 2),
        }


def kill_run_messages(
    n: int, domains: Sequence[str], rng: random.Random
) -> list[tuple[bytes, list[str]]]:
    """`n` messages with unique Message-IDs: most to one recipient; about 8 % to two
    recipients of one domain (one entry, one transaction), 8 % to two domains (two
    entries); about 6 % of recipients are `flaky1-`/`flaky2-` so retries are in play."""
    out = []
    for i in range(n):
        kind = rng.random()
        d1, d2 = rng.sample(list(domains), 2)

        def rcpt(j: int, d: str, i: int = i) -> str:
            r = rng.random()
            prefix = "flaky1-" if r < 0.04 else "flaky2-" if r < 0.06 else ""
            return f"{prefix}u{i}x{j}@{d}"

        if kind < 0.08:
            to = [rcpt(0, d1), rcpt(1, d1)]
        elif kind < 0.16:
            to = [rcpt(0, d1), rcpt(1, d2)]
        else:
            to = [rcpt(0, d1)]
        out.append((message("news@sender.test", to, seq=i), to))
    return out


def kill9_run(
    net: MiniInternet,
    make_volley: Callable[[dict[str, Any]], Volley],
    *,
    messages: int,
    kills: int,
    domains: int = 4,
    max_connections: int = 4,
    pipeline_depth: int | None = None,
    seed: int | None = None,
    deadline: float = 150.0,
    progress: Callable[[str], None] = lambda s: None,
) -> KillRunReport:
    """Deliver `messages` to `domains` receivers while SIGKILLing the whole of Volley
    `kills` times at random instants, restarting it on the same spool each time.

    The instants are random points of progress: a kill happens as soon as the receivers
    have got a randomly drawn number of pairs (a draw may be 0: right after a restart,
    during recovery and intake). Raises AssertionError when a promise is broken: a pair
    never arrives, the spool keeps anything, an entry is torn, a duplicate is not
    explained by a kill (two copies between the same two kills), the log is not intact.
    Duplicates explained by kills are counted, not refused: the caller bounds them.
    """
    seed = random.randrange(2**32) if seed is None else seed
    rng = random.Random(seed)
    names = [f"k{i}.test" for i in range(domains)]
    receivers = [net.domain(d)[0] for d in names]
    batch = kill_run_messages(messages, names, rng)
    msgid_of = {}
    expected: set[Pair] = set()
    for data, to in batch:
        mid = message_id(data)
        assert mid is not None
        msgid_of[mid] = data
        expected.update((mid, r) for r in to)
    report = KillRunReport(seed=seed, messages=messages, pairs=len(expected))
    report.in_flight_capacity = domains * max_connections
    config: dict[str, Any] = {"domains": {"default": {"max_connections": max_connections}}}
    if pipeline_depth is not None:
        config["smtp"] = {"pipeline_depth": pipeline_depth}
    v = make_volley(config)
    start = time.monotonic()
    end = start + deadline

    def got() -> int:
        return sum(len(r.messages) for r in receivers)

    def open_connections() -> int:
        return sum(r.open_connections for r in receivers)

    pending_at_kill: list[set[Pair]] = []  # the spool's pending recipients, per kill

    # Drops go in while Volley runs, so intake is busy during the first kills.
    for data, _ in batch:
        v.drop(data)
    # Random progress points, spread over the first 90 % of the run.
    points = sorted(rng.randrange(0, int(len(expected) * 0.9)) for _ in range(kills))
    for i, point in enumerate(points):
        wait_for(
            lambda p=point: got() >= p,  # type: ignore[misc]
            timeout=max(1.0, end - time.monotonic()),
            interval=0.005,
            message=lambda i=i: f"kill {i}: {got()} received; {v.text_output()[-2000:]}",  # type: ignore[misc]
        )
        report.connections_at_kill.append(open_connections())
        v.kill()
        report.kills.append(time.time())
        pending_at_kill.append(pending_pairs(v.spool))
        report.kill_receipts.append(got())
        problems = log_lines_problems(v.log_path)
        assert not problems, f"after kill {i}: torn lines inside the log: {problems[:5]}"
        report.torn_tails.append(_torn_tail(v.log_path))
        report.logged_and_queued.append(_logged_and_queued(v))
        left = leftovers(v.spool)
        progress(
            f"kill {i + 1}/{kills} at {report.kill_receipts[-1]} receipts; "
            f"{len(left['queue'])} queued, {len(left['incoming'])} drops, "
            f"{len(left['tmp'])} tmp; logged+queued {report.logged_and_queued[-1]}; "
            f"{report.connections_at_kill[-1]} connections open at the kill"
        )
        report.restarts.append(time.time())
        restart(v)

    def complete() -> bool:
        return expected <= received_pairs(receivers).keys() and not any(leftovers(v.spool).values())

    wait_for(
        complete,
        timeout=max(1.0, end - time.monotonic()),
        interval=0.1,
        message=lambda: _missing(expected, receivers, v),
    )
    assert v.stop() == 0
    # A torn last line left by a kill must not swallow the next incarnation's first record.
    problems = log_lines_problems(v.log_path)
    assert not problems, (
        f"records glued to a torn line ({sum(report.torn_tails)} kills left the log ending "
        f"mid-line): {problems[:3]}"
    )
    # Every pair's delivery is in the log, and nothing else happened to any message.
    missing_log = sorted(expected - _delivered_pairs(v))
    assert not missing_log, f"received but never logged delivered: {missing_log[:10]}"
    report.seconds = time.monotonic() - start
    bad = [r for r in v.log() if r["event"] in ("bounced", "expired", "rejected")]
    assert not bad, f"unexpected outcomes: {bad[:5]}"
    assert not any(leftovers(v.spool).values()), leftovers(v.spool)
    assert not list((v.spool / "rejected").iterdir())

    copies = received_copies(receivers)
    assert set(copies) == expected, sorted(set(copies) ^ expected)[:10]
    retaken = _retaken_after_delivery(v)
    assert not retaken, (
        f"{len(retaken)} drops were taken again after their message had been delivered "
        f"(a kill between the entries' commit and the drop's unlink, then delivery of the "
        f"scanned entry before intake re-read the drop): {retaken[:5]}"
    )
    # Which incarnation of Volley sent each copy: one received after restart s was spawned
    # (and before restart s+1) was sent by incarnation s or, if it sat in the receiver's
    # socket buffer across the kill, by s-1; never by a later one. The spawn time is the
    # boundary, not the kill time: a copy sent just before a kill is often *recorded* just
    # after it (the receivers are threads of this busy test process). Two copies in one
    # segment would be a resend with no crash to explain it.
    resent: list[set[str]] = [set() for _ in report.kills]
    unrecorded: list[set[str]] = [set() for _ in report.kills]
    unexplained = []
    for pair, cs in copies.items():
        segments = [sum(1 for k in report.restarts if k < at) for at, _ in cs]
        if len(set(segments)) != len(segments):
            unexplained.append((pair, [at for at, _ in cs], segments))
            continue
        for s, (_, txn) in zip(segments[:-1], cs[:-1], strict=True):
            resent[s].add(txn)  # received before kill s+1, sent again after it
        for s, (_, txn) in zip(segments, cs, strict=True):
            if s < len(pending_at_kill) and pair in pending_at_kill[s]:
                unrecorded[s].add(txn)  # accepted, still pending when its sender died
    report.accepted_unrecorded_per_kill = [len(u) for u in unrecorded]
    assert not unexplained, (
        f"duplicates with no kill between the copies: {unexplained[:5]}; "
        f"kills {report.kills}; restarts {report.restarts}"
    )
    # Nothing is sent again that Volley had recorded: every transaction resent after kill
    # s was accepted by a receiver and still pending in the spool at that kill.
    for s, (sent_again, counted) in enumerate(zip(resent, unrecorded, strict=True)):
        extra = sorted(sent_again - counted)
        assert not extra, f"kill {s}: resent although recorded at the kill: {extra[:5]}"
    report.duplicates = sum(len(c) - 1 for c in copies.values())
    report.resent_per_kill = [len(t) for t in resent]
    return report


def _torn_tail(path: Path) -> bool:
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        if f.tell() == 0:
            return False
        f.seek(-1, os.SEEK_END)
        return f.read(1) != b"\n"


def _delivered_pairs(v: Volley) -> set[Pair]:
    return {(r["msgid"], r["rcpt"]) for r in v.log() if r["event"] == "delivered"}


def _retaken_after_delivery(v: Volley) -> list[tuple[str, str, float, float]]:
    """(msgid, rcpt, delivered at, received again at) for every recipient whose drop was
    queued (`received`) again after a `delivered` record: that second entry is new, so it
    is sent again, a duplicate no kill explains by itself."""
    delivered: dict[Pair, float] = {}
    out = []
    for r in v.log():
        key = (str(r.get("msgid")), str(r.get("rcpt")))
        if r["event"] == "delivered":
            delivered.setdefault(key, float(r["ts"]))
        elif r["event"] == "received" and key in delivered:
            out.append((key[0], key[1], delivered[key], float(r["ts"])))
    return out


def _logged_and_queued(v: Volley) -> int:
    """Recipients logged delivered whose entry still lists them as pending.

    The outcome is logged before the spool changes (write-ahead), so a kill between the
    two leaves this; the entry is then sent again: one of the in-flight duplicates."""
    delivered: defaultdict[str, set[str]] = defaultdict(set)
    for r in v.log():
        if r["event"] == "delivered":
            delivered[r["id"]].add(r["rcpt"])
    return sum(
        1
        for eid, rcpts in queued_pending(v.spool).items()
        for rcpt in rcpts
        if rcpt in delivered.get(eid, ())
    )


def _missing(expected: set[Pair], receivers: Sequence[Receiver], v: Volley) -> str:
    pairs = received_pairs(receivers)
    missing = sorted(expected - pairs.keys())
    left = leftovers(v.spool)
    counts = Counter(r["event"] for r in v.log())
    spool = {k: (len(x), x[:3]) for k, x in left.items()}
    return (
        f"{len(missing)} pairs never arrived, e.g. {missing[:5]}; spool {spool}; "
        f"log {dict(counts)}; output:\n{v.text_output()[-3000:]}"
    )
