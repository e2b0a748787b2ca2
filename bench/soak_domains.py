"""Soak over distinct domains: does per-destination state stay bounded?

Responsible for: running the real `volley run` while a producer drops one message to each
of N distinct domains (default 200 000) at a steady rate, every domain's MX resolving to
one fast local receiver (Postfix's smtp-sink when installed, else the suite's aiosmtpd
receiver), and sampling the worker processes' RSS from /proc every few seconds.  Prints
one JSON line: the RSS when a quarter, half, three quarters and all of the domains had
been sent to, the peak, and the growth over the second half in MB per 100 000 domains.
Issue #9 asks that the workers' RSS stay flat as the number of domains seen grows (idle
domains' state is dropped: engine.sched.queue.forget_idle_domains).
Not responsible for: asserting (a bench reports), or being run by the suite.

Everything is on 127.0.0.0/8.

Usage: .venv/bin/python -m bench.soak_domains [--domains N] [--rate R] [--workers W]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench.restart_big_queue import LogTail
from bench.sinks import FastReceivers
from tests.support.crash import worker_pids
from tests.support.dns_server import DnsServer
from tests.support.internet import message
from tests.support.net import free_port, wait_for
from tests.support.volley import Volley

SAMPLE_EVERY = 2.0  # seconds between RSS samples
# Receivers on 127.0.0.2-9, the domains spread over them: smtp-sink is select(2)-based
# (1 024 descriptors), and one destination address would also run the client out of
# ephemeral ports (a new connection per domain, each leaving a TIME_WAIT for 60 s).
SINK_IPS = [f"127.0.0.{i}" for i in range(2, 10)]
MAX_BACKLOG = 20_000  # drops waiting in incoming/ before the producer waits


def _rss_mb(v: Volley) -> float:
    total_kb = 0
    for pid in worker_pids(v).values():
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
        except OSError:
            continue
    return total_kb / 1024


def _wait_until(tail: LogTail, domains: int, until: float) -> None:
    """Until every domain was delivered to, or the next sample is due."""
    wait_for(lambda: tail.poll() >= domains or time.monotonic() >= until, timeout=600, interval=0.1)


def tail_deferred(v: Volley) -> int:
    """Deferrals in the log: a soak that defers is measuring the receivers, not Volley."""
    return sum(1 for r in v.events("deferred"))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--domains", type=int, default=200_000)
    p.add_argument("--rate", type=float, default=1000.0, help="drops per second")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--ttl", type=int, default=300, help="TTL of the MX and A records (s)")
    args = p.parse_args()

    root = Path(tempfile.mkdtemp(prefix="volley-soak-"))
    dns = DnsServer()
    dns.start()
    port = free_port(SINK_IPS)
    for j, ip in enumerate(SINK_IPS):
        dns.add_a(f"mx{j}.sink.test", [ip], ttl=args.ttl)
    names = [f"s{i}.test" for i in range(args.domains)]
    for i, name in enumerate(names):
        dns.add_mx(name, [(10, f"mx{i % len(SINK_IPS)}.sink.test")], ttl=args.ttl)
    receivers = FastReceivers(SINK_IPS, port, root / "sinks").start()
    v = Volley(
        root,
        dns=dns.address,
        smtp_port=port,
        workers=args.workers,
        # Idle connections close after 0.1 s: with a new domain every millisecond the
        # default 5 s would keep ~5 000 idle connections open, which is not what is measured.
        config={"smtp": {"idle_timeout": "100ms"}, "dns": {"negative_ttl": "1s"}},
    )
    samples: list[tuple[float, int, float]] = []  # (seconds, delivered, RSS MB)
    sent = 0
    try:
        v.start()
        tail = LogTail(v.log_path)
        t0 = time.monotonic()

        def produce() -> None:
            nonlocal sent
            for i, name in enumerate(names):
                due = t0 + i / args.rate
                pause = due - time.monotonic()
                if pause > 0:
                    time.sleep(pause)  # the producer's pace, not a wait for Volley
                while i - tail.delivered > MAX_BACKLOG:
                    time.sleep(0.05)
                v.drop(message("news@sender.test", [f"u@{name}"], seq=i))
                sent = i + 1

        producer = threading.Thread(target=produce, name="producer", daemon=True)
        producer.start()
        next_sample = t0
        while tail.poll() < args.domains:
            now = time.monotonic()
            if now >= next_sample:
                samples.append((round(now - t0, 1), tail.delivered, round(_rss_mb(v), 1)))
                next_sample = now + SAMPLE_EVERY
            _wait_until(tail, args.domains, next_sample)
        samples.append((round(time.monotonic() - t0, 1), tail.delivered, round(_rss_mb(v), 1)))
        producer.join(10)
        status = v.stop(timeout=60)
    finally:
        if v.proc is not None and v.proc.poll() is None:
            v.kill()
        receivers.stop()
        dns.stop()

    def rss_at(fraction: float) -> float:
        want = args.domains * fraction
        return next(rss for _, done, rss in samples if done >= want)

    half = rss_at(0.5)
    full = rss_at(1.0)
    print(
        json.dumps(
            {
                "bench": "soak_domains",
                "receiver": f"{len(SINK_IPS)} x {receivers.kind}",
                "deferred": tail_deferred(v),
                "domains": args.domains,
                "workers": args.workers,
                "ttl": args.ttl,
                "seconds": samples[-1][0],
                "rss_mb_at": {q: rss_at(q) for q in (0.25, 0.5, 0.75, 1.0)},
                "rss_mb_peak": max(rss for _, _, rss in samples),
                "growth_mb_per_100k_domains_second_half": round(
                    (full - half) / (args.domains / 2) * 100_000, 1
                ),
                "exit_status": status,
                "samples": samples,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
