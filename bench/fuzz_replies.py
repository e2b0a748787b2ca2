"""Reply fuzzing at scale: the real `volley run` against MX hosts that answer at random.

Responsible for: running tests.support.fuzz_campaign with a large target (default 10 000
connections) and printing its report as one JSON line: how many connections the fuzzed
receivers saw, how many carried a transaction (each one logged entry attempt) and how
many did not (failed before the session was ready: bounded per worker, MX address and
retry step), every recipient's final outcome, what is left in the spool, the busiest
second, and the workers' peak RSS.  Issue #14's "Done when" asks for these figures.
Not responsible for: asserting them (tests/integration/test_fuzzed_receivers.py does at
a small scale; `--check` exits 1 here when a promise is broken).

Everything is on 127.0.0.0/8.

Usage: .venv/bin/python -m bench.fuzz_replies [--connections N] [--workers W] [--seed S]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from tests.support.fuzz_campaign import fuzz_campaign


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--connections", type=int, default=10_000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--domains", type=int, default=8)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--check", action="store_true", help="exit 1 when a promise is broken")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="volley-fuzz-") as tmp:
        r = fuzz_campaign(
            Path(tmp),
            target_connections=args.connections,
            workers=args.workers,
            domains=args.domains,
            seed=args.seed,
        )
    out = r.as_dict()
    broken = [
        what
        for what, bad in (
            ("recipients without a final outcome", r.unfinished),
            ("entries left in the spool", r.left_queued),
            ("internal errors", r.internal_errors),
            ("connections with a transaction > entry attempts", r.with_mail > r.entry_attempts),
            ("connections without one over the bound", r.without_mail > r.without_mail_bound),
        )
        if bad
    ]
    out["broken"] = broken
    print(json.dumps(out, sort_keys=True))
    return 1 if args.check and broken else 0


if __name__ == "__main__":
    sys.exit(main())
