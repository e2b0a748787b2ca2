"""The suppression check's cost at intake against a list of 1 000 000 entries.

Responsible for: building a suppression list of `--entries` entries (addresses, 2 % of
them scoped to a sender domain, plus 1 000 whole domains) in a temporary
`suppression.db` with engine.suppress.store (timing the bulk add, as `volley suppress
import` does it), then timing, in this one process (one core), what intake does per
message: engine.suppress.check.SuppressionCheck.split for single-recipient messages
that miss the list (the common case), that hit it, and for 10-recipient messages; and
engine.suppress.gate.IntakeGate.screen (the header pass for the From domain plus the
check) on the bench's 5 KB messages.  One JSON line per measurement: µs per message and
per recipient, and the share of a worker's intake budget at 3 000 messages/s.
Not responsible for: the engine's throughput (bench.run), or asserting anything.

Usage: .venv/bin/python -m bench.suppress_check [--entries 1000000] [--messages 20000]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

from bench.workload import SENDER, Spec, generate
from engine.smtp.encode import wire_body
from engine.suppress.check import SuppressionCheck
from engine.suppress.gate import IntakeGate
from engine.suppress.model import GLOBAL, Entry, Source
from engine.suppress.store import SqliteSuppressionReader, SqliteSuppressionStore

INTAKE_RATE = 3000.0  # messages/s a worker takes at intake (issue #12's figure)
CHUNK = 50_000  # entries per transaction while building the list


def build(path: Path, n: int, rng: random.Random) -> tuple[list[str], float]:
    """The list's file; the addresses on it, and the seconds the bulk add took."""
    store = SqliteSuppressionStore(path)
    listed: list[str] = []
    start = time.perf_counter()
    batch: list[Entry] = []
    for i in range(n):
        address = f"user{i}.{rng.randrange(10**9)}@d{i % 5000}.test"
        scope = "news.example.com" if i % 50 == 0 else GLOBAL
        batch.append(Entry(address, scope, "InvalidRecipient", Source.IMPORT, 1.8e9))
        listed.append(address)
        if len(batch) == CHUNK:
            store.add(batch, replace=True)
            batch = []
    batch += [Entry(f"gone{i}.test", GLOBAL, "domain", Source.MANUAL, 1.8e9) for i in range(1000)]
    store.add(batch, replace=True)
    store.checkpoint()
    took = time.perf_counter() - start
    store.close()
    return listed, took


def timed(fn: object, jobs: list[tuple[str, list[str]]], now: float) -> float:
    check = fn  # SuppressionCheck.split or IntakeGate.screen
    for domain, rcpts in jobs[:500]:  # warm-up: page cache, statements
        check(domain, rcpts, now)  # type: ignore[operator]
    start = time.process_time()
    for domain, rcpts in jobs:
        check(domain, rcpts, now)  # type: ignore[operator]
    return (time.process_time() - start) / len(jobs)


def line(name: str, per_message: float, recipients: int, **extra: object) -> None:
    out = {
        "measure": name,
        "us_per_message": round(per_message * 1e6, 2),
        "us_per_recipient": round(per_message * 1e6 / recipients, 2),
        "share_of_intake_at_3000_msg_s": f"{per_message * INTAKE_RATE * 100:.1f} %",
        **extra,
    }
    print(json.dumps(out), flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", type=int, default=1_000_000)
    ap.add_argument("--messages", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
    now = 1.9e9
    with tempfile.TemporaryDirectory(prefix="volley-suppress-") as tmp:
        path = Path(tmp) / "suppression.db"
        listed, took = build(path, args.entries, rng)
        size = path.stat().st_size
        print(
            json.dumps(
                {
                    "measure": "build",
                    "entries": args.entries + 1000,
                    "seconds": round(took, 1),
                    "entries_per_s": round((args.entries + 1000) / took),
                    "file_mb": round(size / 2**20, 1),
                }
            ),
            flush=True,
        )
        reader = SqliteSuppressionReader(path)
        check = SuppressionCheck(reader).split
        m = args.messages
        misses = [("example.com", [f"reader{i}@dom{i % 50}.test"]) for i in range(m)]
        line("miss, 1 recipient", timed(check, misses, now), 1, entries=args.entries)
        hits = [("example.com", [rng.choice(listed)]) for _ in range(m)]
        line("hit, 1 recipient", timed(check, hits, now), 1, entries=args.entries)
        tens = [
            ("example.com", [f"r{i}.{j}@dom{j}.test" for j in range(9)] + [rng.choice(listed)])
            for i in range(m // 10)
        ]
        line("10 recipients, 1 hit", timed(check, tens, now), 10, entries=args.entries)
        gate = IntakeGate(SuppressionCheck(reader))
        screen = [(wire_body(x.data), [x.rcpt]) for x in generate(Spec(messages=m, size=5000))]

        def whole(mail: bytes, rcpts: list[str], now: float) -> None:
            gate.screen(mail, SENDER, rcpts, now)

        line(
            "gate.screen (From domain + check), 5 KB message",
            timed(whole, screen, now),  # type: ignore[arg-type]
            1,
            entries=args.entries,
        )
        empty = Path(tmp) / "empty.db"
        SqliteSuppressionStore(empty).close()
        empty_check = SuppressionCheck(SqliteSuppressionReader(empty)).split
        line("miss, 1 recipient, empty list", timed(empty_check, misses, now), 1, entries=0)
        reader.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
