"""Hostile receivers for a while: how much memory can an MX host make a worker hold?

Responsible for: running the real `volley run` (2 workers, the RFC 5321 default
timeouts) against each hostile receiver of tests/support/hostile.py for `--seconds`
(30 by default: issue #11's endless greeting took a worker to 4.3 GB in 30 s), with a
1 s retry step so Volley keeps reconnecting, while good mail flows to a second
destination; then printing one JSON line per receiver: the workers' peak RSS (VmHWM),
connections made, deferrals logged and good messages delivered meanwhile.
Not responsible for: asserting (a bench reports; tests/integration/test_hostile_*.py
assert the bounds), or being run by the suite.

Everything is on 127.0.0.0/8.

Usage: .venv/bin/python -m bench.hostile_rss [--seconds 30] [--only endless_greeting]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

from tests.support import hostile
from tests.support.crash import worker_pids
from tests.support.internet import MiniInternet, message
from tests.support.net import wait_for
from tests.support.volley import Volley

BEHAVIOURS: dict[str, hostile.Behaviour] = {
    "endless_greeting": hostile.endless_greeting,
    "endless_ehlo": hostile.endless_ehlo,
    "drip": hostile.drip,
    "drip_rcpt_replies": hostile.drip_rcpt_replies,
    "ehlo_5000_lines": hostile.ehlo_5000_lines,
    "reset_after_354": hostile.reset_after_354,
    "unsolicited": hostile.unsolicited,
    "tls_stall": hostile.tls_stall,
}
GOOD_RATE = 100  # good messages dropped per second meanwhile


def run_one(
    name: str, behaviour: hostile.Behaviour, seconds: float, root: Path
) -> dict[str, object]:
    with MiniInternet() as net:
        server = hostile.HostileServer(net.address(), net.port, behaviour).start()
        try:
            net.publish("hostile.test", [server.ip])
            (good,) = net.domain("good.test")
            policy = {"retry_schedule": ["1s"], "retry_jitter": 0.0}
            v = Volley(
                root / name,
                dns=net.dns.address,
                smtp_port=net.port,
                config={
                    # The RFC 5321 defaults the engine ships with, not the suite's short ones.
                    "smtp": {
                        "timeouts": {
                            "greeting": "5m",
                            "ehlo": "5m",
                            "starttls": "2m",
                            "mail": "5m",
                            "rcpt": "5m",
                            "data": "2m",
                            "data_block": "3m",
                            "data_done": "10m",
                        }
                    },
                    # Opportunistic TLS would go on in plaintext after a stalled
                    # handshake; required TLS makes the stall the whole story.
                    "domains": {
                        "default": policy,
                        "hostile.test": {**policy, "tls": "required"}
                        if behaviour is hostile.tls_stall
                        else policy,
                    },
                },
            )
            v.root.mkdir(parents=True, exist_ok=True)
            with v:
                for i in range(20):
                    v.drop(message("news@sender.test", [f"u{i}@hostile.test"], seq=i))
                stop = threading.Event()

                def produce() -> None:
                    n = 0
                    while not stop.wait(1.0 / GOOD_RATE):
                        v.drop(message("news@sender.test", [f"g{n}@good.test"], seq=10_000 + n))
                        n += 1

                producer = threading.Thread(target=produce, daemon=True)
                producer.start()
                end = time.monotonic() + seconds
                wait_for(lambda: time.monotonic() >= end, timeout=seconds + 10, interval=0.5)
                stop.set()
                producer.join()
                peaks = {shard: hostile.peak_rss_mb(pid) for shard, pid in worker_pids(v).items()}
                deferred = sum(
                    1 for e in v.events("deferred") if "@hostile.test" in str(e.get("rcpt"))
                )
                return {
                    "receiver": name,
                    "seconds": seconds,
                    "peak_worker_rss_mb": round(max(peaks.values()), 1),
                    "connections": server.connections,
                    "hostile_deferrals": deferred,
                    "good_delivered": len(good.messages),
                }
        finally:
            server.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--only", choices=sorted(BEHAVIOURS), action="append")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="volley-hostile-") as tmp:
        for name in args.only or list(BEHAVIOURS):
            print(json.dumps(run_one(name, BEHAVIOURS[name], args.seconds, Path(tmp))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
