"""`make demo` (`python -m demo`): the mini internet, the real `volley run`, the live
`volley top` until the queue drains, then a summary.

Responsible for: the sequence — bring up demo.world, write a Volley config into the demo
directory (default var/demo, emptied first), start the installed `volley run` there, drop
the messages of demo.mail at a steady rate, run `volley top` in the terminal until every
message has a final outcome and the spool is empty, save the last /metrics scrape, stop
everything, print demo.summary's report.  Exit status 0 when everything was delivered or
accounted for, 1 otherwise (or on --timeout), 130 on Ctrl-C.
Not responsible for: what the destinations do (demo.world) or the messages (demo.mail).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from demo.mail import Recipient, compose, recipients
from demo.summary import Summary, tally
from demo.world import SENDER, Destination, Kind, World, plan
from engine.config import parse_duration
from tests.support.volley import VOLLEY_SCRIPT, Volley

__all__ = ["main"]

MARKER = ".volley-demo"  # only a directory holding this is emptied by a new run
POLL = 0.25  # seconds between checks for "drained"


def config(workers: int) -> dict[str, Any]:
    """What the demo sets on top of tests.support.volley's loopback defaults: retries in
    seconds rather than minutes, so greylisted mail and the sleepy MX's are delivered
    within the demo, and a connection limit for the big provider."""
    return {
        "workers": workers,
        "dns": {"timeout": "2s", "negative_ttl": "2s"},
        "smtp": {"helo_name": "mta.shop.test"},
        "domains": {
            "default": {"retry_schedule": ["1s", "2s", "4s"], "retry_jitter": 0.1},
            "bigmail.test": {"max_connections": 4},
        },
    }


class Dropper(threading.Thread):
    """Writes the messages into incoming/ at `rate` per second (the producer's side)."""

    def __init__(self, v: Volley, rcpts: list[Recipient], rate: float) -> None:
        super().__init__(name="dropper", daemon=True)
        self.v, self.rcpts, self.rate = v, rcpts, rate
        self.stop = threading.Event()
        self.dropped = 0

    def run(self) -> None:
        t0 = time.monotonic()
        for r in self.rcpts:
            # Paced, not bursted: the live view shows intake and delivery side by side.
            ahead = t0 + self.dropped / self.rate - time.monotonic()
            if ahead > 0 and self.stop.wait(ahead):
                return
            self.v.drop(compose(r), name=f"shop-{r.seq:06d}.eml")
            self.dropped += 1


def drained(v: Volley, dropper: Dropper, total: int) -> bool:
    """Every message dropped, taken, given a final outcome, and nothing left queued
    (DSNs included)."""
    if dropper.is_alive() or dropper.dropped < total or v.incoming():
        return False
    if v.queued():
        return False
    # DSNs (null sender) have their own records; count the messages' recipients only.
    finals = sum(
        1 for r in v.log() if r["event"] in ("delivered", "bounced", "expired") and r.get("sender")
    )
    return finals >= total


def prepare(directory: Path) -> None:
    if directory.exists():
        if not (directory / MARKER).exists():
            raise SystemExit(f"demo: {directory} exists and is not a demo directory; choose --dir")
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    (directory / MARKER).write_text("made by `make demo`; emptied by the next run\n")


def _duration(text: str) -> float:
    try:
        return parse_duration(text, "duration")
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--messages", type=int, default=3000, help="how many (default 3000)")
    p.add_argument(
        "--domains", type=int, default=36, help="ordinary accepting domains (default 36)"
    )
    p.add_argument("--rate", type=float, default=1000.0, help="drops per second (default 1000)")
    p.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1))
    p.add_argument(
        "--outage", type=_duration, default="6s", help="how long sleepy.test's MX is down"
    )
    p.add_argument(
        "--timeout", type=_duration, default="5m", help="give up when not drained by then"
    )
    p.add_argument("--dir", type=Path, default=Path("var/demo"), help="default var/demo")
    p.add_argument("--no-top", action="store_true", help="no live view (for logs and CI)")
    args = p.parse_args(argv)

    destinations = plan(args.domains)
    rcpts = recipients(destinations, args.messages)
    prepare(args.dir)
    root = args.dir.resolve()
    kinds = sorted({d.kind.value for d in destinations})
    typos = sum(1 for d in destinations if d.kind is Kind.TYPO)
    print(
        f"demo: starting a mini internet on 127.0.0.x: a DNS server and "
        f"{len(destinations) - typos} mail domains (+{typos} that do not exist; "
        f"{', '.join(kinds)}), then Volley; {args.messages} messages from {SENDER}",
        flush=True,
    )
    world = World(destinations, outage=args.outage)
    v: Volley | None = None
    dropper: Dropper | None = None
    top: subprocess.Popen[bytes] | None = None
    metrics = ""
    status = 1
    t0 = time.monotonic()
    try:
        world.start()
        v = Volley(
            root,
            dns=world.dns,
            smtp_port=world.smtp_port,
            workers=args.workers,
            config=config(args.workers),
            command=[VOLLEY_SCRIPT],  # the installed command, as a user runs it
            pythonpath=False,
        )
        v.start()
        dropper = Dropper(v, rcpts, args.rate)
        dropper.start()
        if not args.no_top:
            top = subprocess.Popen(
                [VOLLEY_SCRIPT, "top", "--config", str(v.config_path), "--interval", "0.5"]
            )
        deadline = t0 + args.timeout
        while not drained(v, dropper, len(rcpts)):
            if v.proc is not None and v.proc.poll() is not None:
                print(f"demo: volley run exited:\n{v.text_output()[-3000:]}", file=sys.stderr)
                break
            if time.monotonic() > deadline:
                print(f"demo: not drained after {args.timeout:.0f} s", file=sys.stderr)
                break
            time.sleep(POLL)
        else:
            status = 0
    except KeyboardInterrupt:
        status = 130
    except (AssertionError, OSError) as e:  # Volley or a receiver did not start
        print(f"demo: {e}", file=sys.stderr)
    finally:
        if dropper is not None:
            dropper.stop.set()
            dropper.join()
        if top is not None:
            _stop(top)
        if v is not None:
            metrics = _save_metrics(v, root / "metrics.txt")
            if v.proc is not None and v.proc.poll() is None:
                v.stop()
        world.stop()
    if v is None:
        return 1
    took = time.monotonic() - t0
    s = tally(v.log(), [r.address for r in rcpts], len(destinations), world.received(), SENDER)
    _report(s, v, root, metrics, took, destinations, args.rate)
    if status == 0 and not s.accounted:
        status = 1
    return status


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)  # `volley top` ends on Ctrl-C
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _save_metrics(v: Volley, path: Path) -> str:
    url = f"http://127.0.0.1:{v.metrics_port}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            path.write_bytes(resp.read())
    except OSError:
        return url
    return url


def _report(
    s: Summary,
    v: Volley,
    root: Path,
    url: str,
    took: float,
    destinations: list[Destination],
    drop_rate: float,
) -> None:
    here = Path.cwd()

    def rel(p: Path) -> str:
        return str(p.relative_to(here)) if p.is_relative_to(here) else str(p)

    kinds = {d.domain: d.kind for d in destinations}
    print()
    print("\n".join(s.lines(sender=SENDER, drop_rate=drop_rate)))
    print(f"  wall time    {took:.1f} s, Volley start to stop")
    print()
    print(f"  delivery log {rel(v.log_path)}   one JSON line per outcome, e.g.")
    print(f"                 grep '\"bounced\"' {rel(v.log_path)} | head -3")
    if (root / "metrics.txt").exists():
        print(f"  metrics      {rel(root / 'metrics.txt')}   (the last scrape of {url})")
    print(f"  config       {rel(v.config_path)}   Volley's output: {rel(v.output)}")
    print(f"  spool        {rel(v.spool)}   (`volley queue --config {rel(v.config_path)}`)")
    greylist = sorted(d for d, k in kinds.items() if k is Kind.GREYLIST)
    print("  the internet " + ", ".join(greylist) + " greylist; oldlist*.test reject unknown")
    print("               users; sleepy.test's MX is down at first; twomx.test's first MX never")
    print("               answers; bigmial.test and alpinemial.test do not exist")
    print('  more         make demo ARGS="--messages 20000 --workers 2"   (--help for all)')
