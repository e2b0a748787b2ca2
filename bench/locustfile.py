"""Locust producers for the bench: a sustained rate of drop files into Volley's spool.

Responsible for: `Producer` users that each write drops at a constant rate, the way a real
producer does (`.name.tmp`, then rename; bench.workload.write_drop), and report each drop
to locust as a "FILE" request so its stats show the achieved drop rate and latency.
Not responsible for: starting Volley or the receivers, or measuring delivery:
`python -m bench.run --locust` does that around this file and reports the sustained
end-to-end rate (bench/README.md). Standalone, against a Volley you started yourself:

    BENCH_INCOMING=var/spool/incoming BENCH_RATE_PER_USER=300 \\
        .venv/bin/locust -f bench/locustfile.py --headless -u 10 -r 10 -t 60s --only-summary

Locust is gevent-based and monkey-patches the standard library: users here use plain
blocking file I/O (a 5 KB write + rename takes tens of µs, too short to be worth yielding
for), never asyncio. Messages come from a pool generated once per process (generating
costs ~90 µs each, more than the drop itself); drop names are unique per process and
sequence number, so several locust processes (`--processes N`) never collide.

Environment: BENCH_INCOMING (required), BENCH_RATE_PER_USER (drops/s per user, default
100), BENCH_DOMAINS (default 50), BENCH_SEED (default 1), BENCH_POOL (default 5000).
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

from locust import User, constant_throughput, task

from bench.workload import Mail, Spec, generate, write_drop

INCOMING = Path(os.environ.get("BENCH_INCOMING", "var/spool/incoming"))
RATE_PER_USER = float(os.environ.get("BENCH_RATE_PER_USER", "100"))
_SPEC = Spec(
    messages=int(os.environ.get("BENCH_POOL", "5000")),
    domains=int(os.environ.get("BENCH_DOMAINS", "50")),
    seed=int(os.environ.get("BENCH_SEED", "1")),
)
_pool: list[Mail] = []
_counter = itertools.count()


def _mail(i: int) -> Mail:
    if not _pool:
        _pool.extend(generate(_SPEC))
    return _pool[i % len(_pool)]


class Producer(User):
    """Writes one drop per task, `RATE_PER_USER` tasks per second."""

    wait_time = constant_throughput(RATE_PER_USER)

    @task
    def drop(self) -> None:
        i = next(_counter)
        mail = _mail(i)
        name = f"locust-{os.getpid()}-{i:09d}.eml"
        with self.environment.events.request.measure("FILE", "drop .eml", len(mail.data)):
            write_drop(INCOMING, name, mail.data)
