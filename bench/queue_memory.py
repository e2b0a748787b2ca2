"""Memory per queued entry: where a worker's bytes go when it starts on a big queue.

Responsible for: building one shard holding N small entries (default 100 000, written with
the spool API as intake writes them, over D domains, every entry due at once or — with
`--deferred` — spread over the next 24 hours), then, in a fresh child process, running a
worker's start-up on it (recover, the start-up index, the work queue: exactly what
engine.runtime.worker does before it says "ready") under tracemalloc, and printing:

  * bytes per entry after each step (traced Python allocations, the steady state) and at
    the peak (tracemalloc's high-water mark, the scan's transients included);
  * the child's peak RSS (ru_maxrss) and its RSS before the start-up, per entry;
  * the top allocation sites (file:line) of the steady state, by size.

One JSON line last. Not responsible for: the engine's other memory (imports, sockets), which
`python -m bench.run --scale N` measures on the real `volley run`.

Usage: .venv/bin/python -m bench.queue_memory [--entries 100000] [--domains 50] [--deferred]
       [--unsorted] [--untraced]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
ADD_BATCH = 1000  # entries per segment, as the scale bench writes them


def build(root: Path, entries: int, domains: int, deferred: bool, unsorted: bool) -> float:
    """One shard of `entries` ~250-byte entries; returns the seconds taken. `unsorted`:
    ids in random order across segments, as after many deferrals rewrote entries."""
    from bench.restart_big_queue import no_fsync
    from spool import NewEntry, Spool, entry_id

    started = time.monotonic()
    spool = Spool(root)
    spool.ensure(1)
    shard = spool.shard(0)
    now = time.time()
    base_ns = time.time_ns() - 10**10
    body = b"Subject: x\r\n\r\n" + b"y" * 200 + b"\r\n"
    batch: list[NewEntry] = []
    order = list(range(entries))
    if unsorted:
        random.Random(1).shuffle(order)
    with no_fsync():
        for i in order:
            domain = f"dom{i % domains:03d}.test"
            meta: dict[str, Any] = {"v": 1, "sender": "s@x.test", "rcpts": [f"u{i}@{domain}"]}
            due = now + (i * 86_400 / entries if deferred else -1.0)
            eid = entry_id(base_ns + i * 1000, b"m%d" % i)  # distinct µs, as queue_directly
            batch.append(NewEntry(eid, domain, meta, body, due))
            if len(batch) >= ADD_BATCH:
                shard.add(batch)
                batch = []
        if batch:
            shard.add(batch)
    shard.close()
    return time.monotonic() - started


def rss_kb(field: str = "VmRSS") -> int:
    """This process's RSS (or VmHWM: its peak) in KiB. Not ru_maxrss: Linux carries that
    across exec, so a child started from the builder would report the builder's peak."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def measure_rss(root: Path, entries: int) -> dict[str, Any]:
    """The child's side, untraced (tracemalloc's own bookkeeping would triple the RSS): a
    worker's start-up on the shard; RSS before and after, peak RSS, seconds."""
    from engine.runtime.startup import load_queue
    from engine.sched.queue import WorkQueue
    from spool import Spool

    rss0 = rss_kb()
    t = time.monotonic()
    shard = Spool(root).shard(0)
    shard.recover()
    queue = WorkQueue()
    load_queue(shard, queue, time.time())
    elapsed = time.monotonic() - t
    assert len(queue) == entries, (len(queue), entries)
    return {
        "startup_s": round(elapsed, 2),
        "rss_before_mb": round(rss0 / 1024, 1),
        "rss_after_mb": round(rss_kb() / 1024, 1),
        "peak_rss_mb": round(rss_kb("VmHWM") / 1024, 1),
        "rss_growth_bytes_per_entry": round((rss_kb() - rss0) * 1024 / entries, 1),
        "peak_rss_growth_bytes_per_entry": round((rss_kb("VmHWM") - rss0) * 1024 / entries, 1),
    }


def measure(root: Path, entries: int, top: int) -> dict[str, Any]:
    """The child's side, traced: the same start-up, step by step, and the top sites."""
    from engine.runtime.startup import load_queue
    from engine.sched.queue import WorkQueue
    from spool import Spool

    tracemalloc.start(1)
    base = tracemalloc.get_traced_memory()[0]
    steps: dict[str, float] = {}
    t = time.monotonic()
    shard = Spool(root).shard(0)
    shard.recover()
    steps["recover"] = tracemalloc.get_traced_memory()[0] - base
    queue = WorkQueue()
    load_queue(shard, queue, time.time())
    steps["queue"] = tracemalloc.get_traced_memory()[0] - base
    elapsed = time.monotonic() - t
    current, peak = tracemalloc.get_traced_memory()
    snap = tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(False, tracemalloc.__file__)]
    )
    sites = [
        {
            "site": f"{_short(s.traceback[0].filename)}:{s.traceback[0].lineno}",
            "bytes_per_entry": round(s.size / entries, 1),
            "blocks": s.count,
        }
        for s in snap.statistics("lineno")[:top]
    ]
    tracemalloc.stop()
    assert len(queue) == entries, (len(queue), entries)
    return {
        "entries": entries,
        "traced_startup_s": round(elapsed, 2),
        "traced_bytes_per_entry": {k: round(v / entries, 1) for k, v in steps.items()},
        "traced_peak_bytes_per_entry": round((peak - base) / entries, 1),
        "traced_now_bytes_per_entry": round((current - base) / entries, 1),
        "top_sites": sites,
    }


def _short(path: str) -> str:
    return path.replace(str(REPO) + "/", "")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--entries", type=int, default=100_000)
    p.add_argument("--domains", type=int, default=50)
    p.add_argument("--deferred", action="store_true", help="due over the next 24 h, not now")
    p.add_argument("--unsorted", action="store_true", help="ids in random segment order")
    p.add_argument("--top", type=int, default=12)
    p.add_argument("--untraced", action="store_true", help="RSS and time only (big runs)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--traced", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        root = Path(args.child)
        got = (
            measure(root, args.entries, args.top)
            if args.traced
            else measure_rss(root, args.entries)
        )
        print(json.dumps(got))
        return 0
    root = Path(tempfile.mkdtemp(prefix="volley-qmem-"))
    try:
        build_s = build(root, args.entries, args.domains, args.deferred, args.unsorted)
        res: dict[str, Any] = {}
        for traced in ([], ["--traced"])[: 1 if args.untraced else 2]:
            out = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "bench.queue_memory",
                    "--child",
                    str(root),
                    "--entries",
                    str(args.entries),
                    "--top",
                    str(args.top),
                    *traced,
                ],
                cwd=REPO,
                capture_output=True,
                text=True,
                check=True,
                env={**os.environ, "PYTHONPATH": str(REPO)},
            )
            res.update(json.loads(out.stdout.strip().splitlines()[-1]))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    res.update(
        build_s=round(build_s, 1),
        domains=args.domains,
        deferred=args.deferred,
        unsorted=args.unsorted,
    )
    for k in (
        "traced_bytes_per_entry",
        "traced_peak_bytes_per_entry",
        "startup_s",
        "rss_before_mb",
        "peak_rss_mb",
        "rss_growth_bytes_per_entry",
        "peak_rss_growth_bytes_per_entry",
    ):
        if k in res:
            print(f"{k}: {res[k]}", file=sys.stderr)
    for s in res.get("top_sites", []):
        print(
            f"  {s['bytes_per_entry']:>7} B/entry  {s['blocks']:>8} blocks  {s['site']}",
            file=sys.stderr,
        )
    print(json.dumps(res, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
