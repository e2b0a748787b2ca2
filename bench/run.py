"""`python -m bench.run` (`make bench`): Volley, Postfix and the raw limit, one invocation.

Responsible for: the command line, picking the mode, the default comparison (`compare`:
each phase of `--only` against fresh sinks, and the ratios between them), and printing a
human summary followed by one JSON line (always the last line of stdout). Modes: the
default comparison, `--wan-rtt` (per-connection throughput under latency), `--scale` (a
large queue at start-up), `--locust` (a sustained drop rate driven by
bench/locustfile.py), all three in bench.modes, and `--backpressure` (receivers that say
no, Volley and Postfix: bench.backpressure).
Not responsible for: the destination side and the Volley and Postfix phases
(bench.phases), the other modes (bench.modes), the summary's wording (bench.report), the
pieces themselves (bench.workload, sinks, postfix, raw, measure), or judging: targets are
printed next to the numbers, never asserted.

Everything started here is stopped on the way out, also on errors, Ctrl-C or SIGTERM
(each piece is a context manager on one ExitStack). All sockets are on 127.0.0.0/8.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.backpressure import backpressure
from bench.backpressure_mix import DEFAULT_MIX
from bench.listener import run_listener
from bench.modes import locust, scale, wan
from bench.phases import (
    PHASES,
    Interrupted,
    publish,
    run_postfix,
    run_volley,
    sink_ips,
    start_dns,
    temporary_dir,
)
from bench.raw import run_raw
from bench.report import log, machine, summary
from bench.sinks import SmtpSinks, find_tool
from bench.workload import Spec, domain_names, generate
from tests.support.net import free_port

__all__ = ["main"]


def _sigterm(signum: int, frame: object) -> None:
    raise Interrupted()


# -- work directory and the default comparison ----------------------------------------------


def workdir(args: argparse.Namespace) -> contextlib.AbstractContextManager[Path]:
    base = Path(args.workdir) if args.workdir else None
    if base is not None:
        base.mkdir(parents=True, exist_ok=True)
    return temporary_dir(args, "volley-bench-", base)


def compare(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    phases = set(args.only)
    if "postfix" in phases and os.geteuid() != 0:
        raise SystemExit("bench: the Postfix phase needs root; use --only volley,raw without it")
    spec = Spec(messages=args.messages, domains=args.domains, seed=args.seed, size=args.size)
    t = time.monotonic()
    mails = list(generate(spec))
    out: dict[str, Any] = {"mode": "compare", "generate_s": round(time.monotonic() - t, 2)}
    domains = domain_names(args.domains)
    ips = sink_ips(args.sinks)
    port = free_port(ips)
    with contextlib.ExitStack() as stack:
        dns = start_dns(stack, "postfix" in phases)
        publish(dns, domains, ips)
        for phase in PHASES:
            if phase not in phases or phase == "listener":
                continue
            log(f"{phase}: {len(mails)} messages ...")
            with SmtpSinks(ips, port, root / f"{phase}-sinks") as sinks:
                if phase == "volley":
                    res = run_volley(args, root / "volley", dns, sinks, mails)
                    sinks.wait_quiet(res.get("connections") or 1, 10)
                elif phase == "postfix":
                    res = run_postfix(args, dns, sinks, mails, domains)
                else:
                    r = run_raw(sinks, mails[0], len(mails), root / "raw", args.raw_sessions)
                    sinks.wait_quiet(r.sessions, 5)
                    res = {
                        "messages": r.messages,
                        "wall_s": round(r.seconds, 3),
                        "msgs_per_s": round(r.rate, 1),
                        "sessions": r.sessions,
                    }
                res["sink_sessions"] = sinks.sessions
                res["sink_messages"] = sinks.messages
            out[phase] = res
            log(f"{phase}: {res['msgs_per_s']} msg/s")
    if "listener" in phases:
        n = args.listener_messages or len(mails)
        log(f"listener: {n} messages over {args.listener_sessions} SMTP sessions ...")
        # Postfix's side needs root (postfix start), as the relay phase does.
        res = run_listener(args, root, mails[0], n, postfix=os.geteuid() == 0)
        out["listener"] = res
        log(f"listener: Volley {res['msgs_per_s']} msg/s")
    ratios: dict[str, float] = {}
    vr = out.get("volley", {}).get("msgs_per_s")
    for other in ("postfix", "raw"):
        o = out.get(other, {}).get("msgs_per_s")
        if vr and o:
            ratios[f"volley_vs_{other}"] = round(vr / o, 3)
    if "volley_vs_postfix" in out.get("listener", {}):
        ratios["listener_volley_vs_postfix"] = out["listener"]["volley_vs_postfix"]
    out["ratios"] = ratios
    return out


# -- command line ---------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.run",
        description="Volley side by side with Postfix and the raw SMTP limit (bench/README.md).",
    )
    p.add_argument("--messages", type=int, default=None, help="workload size (default 20000)")
    p.add_argument("--domains", type=int, default=50, help="destination domains (default 50)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--size", type=int, default=5000, help="message size in bytes (default 5000)")
    p.add_argument("--workers", type=int, default=2, help="Volley worker processes (default 2)")
    p.add_argument("--sinks", type=int, default=4, help="receiver addresses (default 4)")
    p.add_argument(
        "--only",
        default=",".join(PHASES),
        help="comma-separated phases of the comparison: volley,postfix,raw,listener "
        "(default all; listener: SMTP submission into Volley and, as root, Postfix)",
    )
    p.add_argument("--volley-config", help="TOML merged into Volley's config (try knobs)")
    p.add_argument(
        "--dkim",
        choices=("rsa", "ed25519"),
        help="sign every message at intake (RSA-2048 or Ed25519 key made for the run)",
    )
    p.add_argument("--postfix-concurrency", type=int, default=20)
    p.add_argument("--raw-sessions", type=int, default=20, help="smtp-source connections")
    p.add_argument(
        "--listener-sessions", type=int, default=20, help="listener phase: SMTP sessions"
    )
    p.add_argument(
        "--listener-messages", type=int, help="listener phase: messages (default --messages)"
    )
    p.add_argument(
        "--profile",
        nargs="?",
        const="wall",
        choices=("wall", "gil"),
        help="py-spy the Volley phase: wall (threads not idle, incl. syscalls; default) "
        "or gil (Python CPU only)",
    )
    p.add_argument(
        "--threads",
        action="store_true",
        help="Volley's CPU per message per thread (supervisor, event loop, intake, "
        "write-behind), named with py-spy dump",
    )
    p.add_argument("--wan-rtt", type=_duration, help="WAN mode: reply delay, e.g. 50ms")
    p.add_argument("--wan-min-messages", type=int, default=10)
    p.add_argument("--scale", type=int, help="scale mode: queued messages, e.g. 1000000")
    p.add_argument(
        "--scale-window",
        type=float,
        default=60.0,
        help="scale mode: seconds to keep delivering after the first (0: until all)",
    )
    p.add_argument(
        "--backpressure",
        nargs="?",
        const=DEFAULT_MIX,
        metavar="MIX",
        help="backpressure mode: receivers answering a seeded mix, Volley and Postfix "
        f'(--only volley,postfix); default mix "{DEFAULT_MIX.replace("%", "%%")}"',
    )
    p.add_argument(
        "--backpressure-retry",
        type=_duration,
        default=10.0,
        help="backpressure mode: both engines' retry step (default 10s)",
    )
    p.add_argument("--locust", action="store_true", help="locust mode (bench/locustfile.py)")
    p.add_argument("--locust-rate", type=float, default=3000.0, help="drops per second")
    p.add_argument("--locust-users", type=int, default=10)
    p.add_argument("--locust-time", type=_duration, default=60.0)
    p.add_argument("--timeout", type=float, default=900.0, help="seconds per phase")
    p.add_argument("--workdir", help="parent of the temporary work directory (default /tmp)")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    p.add_argument("--json-out", help="also write the JSON result to this file")
    args = p.parse_args(argv)
    args.messages_given = args.messages is not None
    if args.messages is None:
        args.messages = 20_000
    args.only = [x.strip() for x in args.only.split(",") if x.strip()]
    bad = set(args.only) - set(PHASES)
    if bad:
        p.error(f"--only: unknown phase {sorted(bad)[0]!r}")
    return args


def _duration(text: str) -> float:
    t = text.strip()
    for unit, mult in (("ms", 0.001), ("s", 1.0), ("m", 60.0)):
        if t.endswith(unit):
            return float(t[: -len(unit)]) * mult
    return float(t)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    find_tool("smtp-sink")  # fail early, with the install hint
    # Ctrl-C and SIGTERM unwind through every `finally`, which stop what they started. Set
    # SIGINT explicitly: a shell starting us in the background leaves it ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _sigterm)
    started = datetime.datetime.now(datetime.UTC)
    load_at_start = round(os.getloadavg()[0], 2)  # other tenants' load skews every number
    with workdir(args) as root:
        if args.wan_rtt is not None:
            res = wan(args, root)
            res["wan_min_messages"] = args.wan_min_messages
        elif args.scale is not None:
            res = scale(args, root)
            args.messages = args.scale
        elif args.locust:
            res = locust(args, root)
        elif args.backpressure is not None:
            res = backpressure(args, root)
        else:
            res = compare(args, root)
    res["date"] = started.isoformat(timespec="seconds")
    res["machine"] = {**machine(), "load_avg_1m_at_start": load_at_start}
    res["spec"] = {
        "messages": args.messages,
        "domains": args.domains,
        "seed": args.seed,
        "size": args.size,
        "workers": args.workers,
        "sinks": args.sinks,
    }
    print(summary(res))
    line = json.dumps(res, separators=(",", ":"), default=str)
    if args.json_out:
        Path(args.json_out).write_text(line + "\n")
    print(line, flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (KeyboardInterrupt, Interrupted):
        print("bench: interrupted; everything it started has been stopped", file=sys.stderr)
        sys.exit(130)
    except subprocess.CalledProcessError as e:
        print(f"bench: {e}", file=sys.stderr)
        sys.exit(1)
