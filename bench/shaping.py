"""Adaptive shaping against receivers that throttle: throttling provoked, time to finish.

Responsible for: a 20 000-message campaign (one recipient each) from the real `volley run`
(2 workers) to one receiver that throttles like a provider, with `[shaping] enabled` on
and then off, and one JSON line per run: time from start to the last message accepted,
messages accepted, throttling replies the receiver sent (421 at connect, 451 4.7.1 at
RCPT) and those per 1 000 delivered, and the `shaping` changes Volley made.  Receivers
(tests/support/throttling.py):
  * `throttling`: 421 beyond 4 connections at once, 451 4.7.1 at RCPT beyond 200
    messages in the last second;
  * `shedding`: tempfails a share of RCPTs rising with load, none up to 150 a second,
    50 % at 300 a second.
Both runs use the same retry step (5 s) so a deferred message comes back within the run
(with the default 5 min, the unshaped run would mostly measure the retry schedule), and a
10 s shaping window (the default 1 min would give a 100 s campaign two verdicts).
Not responsible for: asserting (tests/integration/test_adaptive_shaping.py does), or being
run by the suite.  Everything is on 127.0.0.0/8.

Usage: .venv/bin/python -m bench.shaping [--messages 20000] [--only throttling]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.phases import Interrupted
from tests.support.internet import MiniInternet, message
from tests.support.net import wait_for
from tests.support.throttling import LoadSheddingServer, ThrottlingServer
from tests.support.volley import Volley

Receiver = ThrottlingServer | LoadSheddingServer
RECEIVERS: dict[str, Callable[[str, int], Receiver]] = {
    "throttling": lambda ip, port: ThrottlingServer(ip, port, max_connections=4, max_rate=200),
    "shedding": lambda ip, port: LoadSheddingServer(ip, port, knee=150),
}


def run_one(kind: str, shaping: bool, messages: int, root: Path) -> dict[str, Any]:
    with MiniInternet() as net:
        rx = RECEIVERS[kind](net.address(), net.port)
        rx.start()
        try:
            net.dns.add_a("mx.campaign.test", [rx.ip])
            net.dns.add_mx("campaign.test", [(10, "mx.campaign.test")])
            v = Volley(
                root / f"{kind}-{'on' if shaping else 'off'}",
                dns=net.dns.address,
                smtp_port=net.port,
                workers=2,
                config={
                    "shaping": {"enabled": shaping, "window": "10s"},
                    "domains": {"default": {"retry_schedule": ["5s"], "retry_jitter": 0.0}},
                },
            )
            (v.spool / "incoming").mkdir(parents=True, exist_ok=True)
            for i in range(messages):  # queued before the start: the campaign is all there
                v.drop(message("news@sender.test", [f"u{i}@campaign.test"], seq=i))
            load = os.getloadavg()[0]
            started = time.monotonic()
            with v:  # starts it; stops it on the way out
                wait_for(
                    lambda: len(rx.messages) >= messages,
                    timeout=1800,
                    interval=0.5,
                    message=lambda: repr(rx),
                )
                took = time.monotonic() - started
                changes = [r["kind"] for r in v.events("shaping")]
            throttled = rx.throttling_replies
            return {
                "receiver": kind,
                "shaping": "on" if shaping else "off",
                "messages": messages,
                "seconds_to_finish": round(took, 1),
                "delivered": len(rx.messages),
                "throttling_replies": throttled,
                "throttling_per_1000_delivered": round(1000 * throttled / len(rx.messages), 1),
                "shaping_changes": {k: changes.count(k) for k in sorted(set(changes))},
                "load_avg_1m_at_start": round(load, 2),
            }
        finally:
            rx.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=20_000)
    ap.add_argument("--only", choices=sorted(RECEIVERS), action="append")
    args = ap.parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so `with v:` stops the `volley run` it started (a
    # killed bench left one running, retrying 20 000 messages for 45 min).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _sigterm)
    with tempfile.TemporaryDirectory(prefix="volley-shaping-") as tmp:
        for kind in args.only or list(RECEIVERS):
            for shaping in (True, False):
                got = run_one(kind, shaping, args.messages, Path(tmp))
                print(json.dumps(got), flush=True)
    return 0


def _sigterm(signum: int, frame: object) -> None:
    raise Interrupted("SIGTERM")


if __name__ == "__main__":
    sys.exit(main())
