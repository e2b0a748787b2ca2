"""kill -9 soak: many SIGKILLs of the whole of Volley during one long run; nothing lost.

Responsible for: the long version of tests/integration/test_crash_kill9_all.py (which
runs 10 kills over 5 000 messages inside the suite's time budget). Same scenario, same
checks (tests.support.kill9_run): every (Message-ID, recipient) pair reaches the
mini internet's receivers, the spool ends empty, every delivery is logged, the log has
no torn line inside it, each duplicate is explained by a kill between its copies, and no
drop is taken again after its message was delivered. Prints one JSON line with the
counts (duplicates per kill included). Exit status 1 when a check fails (the reason is
printed to stderr) or when, at a kill, the transactions accepted but not yet recorded
exceed the README's bound: pipeline depth x connections open + 6 finished entries per
worker on their way to the spool (kill9_run checks that only those are resent).

Not responsible for: speed (that is bench/restart_big_queue.py and the throughput bench).

Everything runs on 127.0.0.0/8: a dnslib server and aiosmtpd receivers in this process.

Usage: .venv/bin/python bench/soak_kill9.py [--messages 20000] [--kills 40] [--seed N]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.internet import MiniInternet  # noqa: E402
from tests.support.kill9_run import kill9_run  # noqa: E402
from tests.support.volley import Volley  # noqa: E402

# Per worker, finished entries whose outcome is still on its way to the spool: 2 waiting
# for their log lines' batch, 4 on the write-behind thread (README, Guarantees).
FINISHED_IN_TRANSIT = 2 + 4


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--messages", type=int, default=20_000)
    p.add_argument("--kills", type=int, default=40)
    p.add_argument("--domains", type=int, default=4)
    p.add_argument("--max-connections", type=int, default=4)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--pipeline-depth", type=int, default=2, help="smtp.pipeline_depth")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--deadline", type=float, default=1800.0, help="seconds for the whole run")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = p.parse_args()

    root = Path(tempfile.mkdtemp(prefix="volley-soak-"))
    made: list[Volley] = []

    def make(config: dict[str, Any]) -> Volley:
        v = Volley(
            root / "v", dns=net.dns.address, smtp_port=net.port, workers=args.workers, config=config
        )
        v.root.mkdir(parents=True, exist_ok=True)
        made.append(v)
        return v.start()

    def progress(line: str) -> None:
        if not args.quiet:
            print(line, file=sys.stderr, flush=True)

    status = 0
    with MiniInternet() as net:
        try:
            report = kill9_run(
                net,
                make,
                messages=args.messages,
                kills=args.kills,
                domains=args.domains,
                max_connections=args.max_connections,
                pipeline_depth=args.pipeline_depth,
                seed=args.seed,
                deadline=args.deadline,
                progress=progress,
            )
            result: dict[str, Any] = {"bench": "soak_kill9", "ok": True, **report.as_dict()}
            bounds = [
                args.pipeline_depth * conns + FINISHED_IN_TRANSIT * args.workers
                for conns in report.connections_at_kill
            ]
            result["accepted_unrecorded_bound_per_kill"] = bounds
            over = zip(report.accepted_unrecorded_per_kill, bounds, strict=True)
            if any(n > bound for n, bound in over):
                result["ok"] = False
                status = 1
        except AssertionError as e:
            traceback.print_exc()
            result = {"bench": "soak_kill9", "ok": False, "failure": str(e)[:2000]}
            status = 1
        finally:
            for v in made:
                if v.proc is not None and v.proc.poll() is None:
                    v.kill()
    print(json.dumps(result), flush=True)
    if args.keep or status:
        print(f"kept {root}", file=sys.stderr)
    else:
        shutil.rmtree(root, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
