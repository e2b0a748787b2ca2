"""The backpressure mode: Volley and Postfix against receivers that say no, same mix.

Responsible for: `backpressure` (`--backpressure [MIX]`): for each engine of `--only`
(volley, postfix), fresh receivers answering the seeded mix (bench.backpressure_sink),
the workload delivered with a short retry schedule (`--backpressure-retry`, 10 s) until
every message is delivered or bounced, and what happened: throughput, CPU per message,
and the queue's behaviour (attempts deferred and why, messages retried, bounced) read
from each engine's own log; plus what the receivers did (their counts).
Not responsible for: the receivers (bench.backpressure_sink) or their decisions
(bench.backpressure_mix), the Volley and Postfix set-ups it reuses (bench.phases,
bench.postfix), or printing (bench.report).

Why a short retry schedule: with the engines' defaults (Volley 5 min, Postfix's
minimal_backoff_time 300 s) a run would last as long as the first retry step and measure
mostly idle time. Both engines get the same step: Volley `retry_schedule = [step]`,
Postfix minimal = maximal backoff = queue_run_delay = step. What is compared is then how
much work the same refusals cost each engine, and how long its queue takes to drain.

Everything started here is stopped on the way out (context managers on one ExitStack).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.backpressure_mix import parse_mix
from bench.backpressure_sink import BackpressureSinks
from bench.measure import TreeSampler, run_numbers
from bench.phases import (
    drop_all,
    pct,
    publish,
    running,
    sink_ips,
    start_dns,
    stop_volley,
    temporary_dir,
    volley_config,
)
from bench.postfix import PostfixRelay
from bench.report import log
from bench.workload import Mail, Spec, domain_names, generate
from tests.support.dns_server import DnsServer
from tests.support.net import free_port
from tests.support.volley import Volley

__all__ = ["backpressure", "postfix_outcomes", "volley_outcomes"]

ENGINES = ("volley", "postfix")
_POLL = 0.25


def backpressure(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    mix = parse_mix(args.backpressure)
    n = args.messages = args.messages if args.messages_given else 10_000
    spec = Spec(messages=n, domains=args.domains, seed=args.seed, size=args.size)
    mails = list(generate(spec))
    domains = domain_names(args.domains)
    ips = sink_ips(args.sinks)
    engines = [e for e in ENGINES if e in args.only] or list(ENGINES)
    if "postfix" in engines and os.geteuid() != 0:
        raise SystemExit("bench: the Postfix phase needs root; use --only volley without it")
    out: dict[str, Any] = {
        "mode": "backpressure",
        "mix": mix.describe(),
        "receiver_seed": args.seed,
        "retry_s": args.backpressure_retry,
    }
    with contextlib.ExitStack() as stack:
        dns = start_dns(stack, "postfix" in engines)
        publish(dns, domains, ips)
        for engine in engines:
            port = free_port(ips)
            log(f"backpressure {engine}: {n} messages, mix {mix.describe()} ...")
            load0 = round(os.getloadavg()[0], 2)
            with BackpressureSinks(ips, port, mix, args.seed, root / f"{engine}-sinks") as sinks:
                if engine == "volley":
                    res = _volley(args, root / "volley", dns, port, mails)
                else:
                    res = _postfix(args, dns, port, mails, domains)
                counts = sinks.stop()
            res["receivers"] = _receiver_summary(counts, res.pop("t0_wall"))
            res["load_avg_1m"] = [load0, round(os.getloadavg()[0], 2)]
            out[engine] = res
            log(f"backpressure {engine}: {res['msgs_per_s']} msg/s, {res['cpu_us_per_msg']} µs")
    v, p = out.get("volley"), out.get("postfix")
    if v and p and p.get("msgs_per_s"):
        out["ratios"] = {
            "volley_vs_postfix": round(v["msgs_per_s"] / p["msgs_per_s"], 3),
            "cpu_postfix_vs_volley": round(p["cpu_us_per_msg"] / v["cpu_us_per_msg"], 3),
        }
    return out


# -- Volley ------------------------------------------------------------------------------


def _volley(
    args: argparse.Namespace, root: Path, dns: DnsServer, port: int, mails: Sequence[Mail]
) -> dict[str, Any]:
    n = len(mails)
    root.mkdir(parents=True, exist_ok=True)
    config = volley_config(args.volley_config)
    config["domains"]["default"]["retry_schedule"] = [args.backpressure_retry]
    v = Volley(root, dns=dns.address, smtp_port=port, workers=args.workers, config=config)
    rcpts = {m.rcpt for m in mails}
    with contextlib.ExitStack() as stack:
        stack.callback(stop_volley, v)
        v.start()
        assert v.proc is not None
        sampler = TreeSampler(v.proc.pid).start()
        t0, t0_wall = time.monotonic(), time.time()
        _, drop_s = drop_all(v.spool / "incoming", mails)
        final = _FinalCount(v.log_path)
        deadline = t0 + args.timeout
        while final.count() < n:
            if not running(v):
                raise RuntimeError(f"volley exited:\n{v.text_output()[-2000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"volley: {final.count()} of {n} final in {args.timeout:g}s")
            time.sleep(_POLL)
        wall = time.monotonic() - t0
        sampler.stop()
        result = run_numbers(n, wall, sampler)
        result["drop_s"] = round(drop_s, 3)
        result["exit_status"] = stop_volley(v)
    result["queue"] = volley_outcomes(v.log(), rcpts)
    result["t0_wall"] = t0_wall
    return result


class _FinalCount:
    """Workload recipients with a final outcome in Volley's log, read incrementally (the
    bench polls it while Volley runs: a whole-file JSON parse would compete for the CPU).
    A bounce report's own outcome has the null sender and is not counted."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.final = 0
        self.partial = b""

    def count(self) -> int:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return 0
        self.offset += len(data)
        lines = (self.partial + data).split(b"\n")
        self.partial = lines.pop()
        for line in lines:
            if (
                b'"event":"delivered"' in line
                or b'"event":"bounced"' in line
                or b'"event":"expired"' in line
            ) and b'"sender":""' not in line:
                self.final += 1
        return self.final


def volley_outcomes(records: Sequence[dict[str, Any]], rcpts: set[str]) -> dict[str, Any]:
    """The queue's behaviour from Volley's delivery log, for the workload's recipients."""
    deferred: Counter[str] = Counter()
    deferred_rcpts: set[str] = set()
    final: Counter[str] = Counter()
    retried = 0
    attempts: list[int] = []
    for r in records:
        rcpt = r.get("rcpt")
        if rcpt not in rcpts:
            continue
        event = r["event"]
        if event == "deferred":
            text = str(r.get("text", ""))
            label = f"{r.get('code')} {r.get('enhanced')}"
            if "refused the session" in text:
                label += " (session refused)"
            deferred[label] += 1
            deferred_rcpts.add(rcpt)
        elif event in ("delivered", "bounced", "expired"):
            final[event] += 1
            attempts.append(int(r.get("attempt", 1)))
            if event == "delivered" and int(r.get("attempt", 1)) > 1:
                retried += 1
    return {
        "delivered": final["delivered"],
        "bounced": final["bounced"],
        "expired": final["expired"],
        "deferrals": sum(deferred.values()),
        "deferred_messages": len(deferred_rcpts),
        "delivered_after_retry": retried,
        "deferrals_by_reason": dict(deferred.most_common()),
        "max_attempts": max(attempts, default=0),
    }


# -- Postfix -----------------------------------------------------------------------------


def _postfix(
    args: argparse.Namespace,
    dns: DnsServer,
    port: int,
    mails: Sequence[Mail],
    domains: Sequence[str],
) -> dict[str, Any]:
    n = len(mails)
    with temporary_dir(args, "volley-bench-pf-", "/tmp") as root:
        relay = PostfixRelay(
            root,
            dns_ip=dns.host,
            smtp_port=port,
            inject_port=free_port(["127.0.0.1"]),
            domains=domains,
            concurrency=args.postfix_concurrency,
            active_limit=max(20_000, n),
            retry=args.backpressure_retry,
        )
        with relay:
            inject_s = relay.inject(mails)
            master = relay.master_pid
            assert master is not None
            sampler = TreeSampler(master).start()
            t0, t0_wall = time.monotonic(), time.time()
            relay.release()
            deadline = t0 + args.timeout
            while relay.queued() > 0 or relay.held() > 0:
                if time.monotonic() > deadline:
                    left = relay.queued()
                    raise TimeoutError(f"postfix: {left} still queued; {relay.log_tail()}")
                time.sleep(_POLL)
            wall = time.monotonic() - t0
            sampler.stop()
            result = run_numbers(n, wall, sampler)
            result["inject_s"] = round(inject_s, 3)
            result["processes"] = sampler.processes
            log_text = relay.log.read_text(errors="replace")
    result["queue"] = postfix_outcomes(log_text, {m.rcpt for m in mails})
    result["instance_dir"] = str(root)
    result["t0_wall"] = t0_wall
    return result


_STATUS = re.compile(r" to=<([^>]*)>.*? dsn=(\d\.\d{1,3}\.\d{1,3}), status=(\w+)(?: \((.*)\))?$")
_HOST = re.compile(r"\S+\[[0-9.]+\](?::\d+)?")
_CODE = re.compile(r"(?:said|talk to me): (\d{3})[ -]")


def postfix_outcomes(log_text: str, rcpts: set[str]) -> dict[str, Any]:
    """The queue's behaviour from Postfix's log (one `status=` line per recipient and
    attempt), for the workload's recipients; bounce notices to the sender are left out."""
    deferred: Counter[str] = Counter()
    deferred_rcpts: set[str] = set()
    final: Counter[str] = Counter()
    retried = 0
    for line in log_text.splitlines():
        m = _STATUS.search(line)
        if m is None or m.group(1) not in rcpts:
            continue
        rcpt, dsn, status, why = m.group(1), m.group(2), m.group(3), m.group(4) or ""
        if status == "deferred":
            code = _CODE.search(why)
            label = f"{code.group(1) if code else '-'} {dsn}"
            if "refused to talk to me" in why:
                label += " (session refused)"
            if why.startswith("delivery temporarily suspended"):
                label += " (destination suspended)"
            elif code is None:
                label += f" ({_HOST.sub('HOST', why).split(':', 1)[0][:40]})"
            deferred[label] += 1
            deferred_rcpts.add(rcpt)
        elif status in ("sent", "bounced", "expired"):
            final["delivered" if status == "sent" else status] += 1
            if status == "sent" and rcpt in deferred_rcpts:
                retried += 1
    return {
        "delivered": final["delivered"],
        "bounced": final["bounced"],
        "expired": final["expired"],
        "deferrals": sum(deferred.values()),
        "deferred_messages": len(deferred_rcpts),
        "delivered_after_retry": retried,
        "deferrals_by_reason": dict(deferred.most_common()),
    }


# -- both --------------------------------------------------------------------------------


def _receiver_summary(counts: dict[str, Any], t0_wall: float) -> dict[str, Any]:
    """The receivers' counts, with acceptance times as seconds after the start."""
    times = sorted(t - t0_wall for t in counts.pop("accept_times", []))
    if times:
        counts["accepted_s_p50"] = round(pct(times, 50) or 0, 2)
        counts["accepted_s_p90"] = round(pct(times, 90) or 0, 2)
        counts["accepted_s_last"] = round(times[-1], 2)
    return json.loads(json.dumps(counts))
