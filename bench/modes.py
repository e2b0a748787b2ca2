"""The bench's other modes: WAN latency, scale (a large queue at start-up), and locust.

Responsible for: `wan` (`--wan-rtt`: Volley's per-connection throughput when every reply
is held one RTT), `scale` (`--scale`: a queue filled directly, then `volley run`: time to
first delivery and peak memory) and `locust` (`--locust`: a sustained drop rate driven by
bench/locustfile.py while Volley delivers), each returning its result for the JSON line.
Not responsible for: the default comparison or the command line (bench.run), the
destination side and the Volley phase they reuse (bench.phases), or printing (bench.report).

Everything started here is stopped on the way out, also on errors, Ctrl-C or SIGTERM
(each piece is a context manager on one ExitStack). All sockets are on 127.0.0.0/8.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bench.measure import TreeSampler
from bench.phases import (
    REPO,
    count_event,
    new_volley,
    pct,
    publish,
    run_volley,
    running,
    sink_ips,
    start_dns,
    stop_volley,
    wait_until,
)
from bench.report import TARGET_WAN_FRACTION, log
from bench.sinks import SmtpSinks
from bench.wan_sink import WanSink
from bench.workload import Spec, domain_names, generate, queue_directly
from tests.support.net import free_port
from tests.support.volley import Volley

__all__ = ["locust", "scale", "wan"]


def wan(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    rtt = args.wan_rtt
    n = args.messages = args.messages if args.messages_given else 2000
    spec = Spec(messages=n, domains=args.domains, seed=args.seed, size=args.size)
    mails = list(generate(spec))
    domains = domain_names(args.domains)
    ips = sink_ips(args.sinks)
    port = free_port(ips)
    with contextlib.ExitStack() as stack:
        dns = start_dns(stack, False)
        publish(dns, domains, ips)
        sink = stack.enter_context(WanSink(ips, port, rtt))
        res = run_volley(args, root / "volley", dns, sink, mails)
        conns = sink.connections
    # One reply delay per message on a busy connection: the previous message's 250 and
    # this one's 354 come back together (smtp.pipeline_depth >= 2, the default); lock-step
    # transactions (depth 1) need two, 1 / (2 RTT).
    target = TARGET_WAN_FRACTION / rtt
    busy = [c for c in conns if c.messages >= args.wan_min_messages and c.rate() is not None]
    rates = [r for c in busy if (r := c.rate()) is not None]
    span = sum((c.last_done or 0) - (c.first_mail or 0) for c in busy)
    res.update(
        rtt_ms=round(rtt * 1000, 1),
        sink_connections=len(conns),
        measured_connections=len(busy),
        per_conn_msgs_per_s_p50=round(pct(rates, 50) or 0, 2),
        per_conn_msgs_per_s_p10=round(pct(rates, 10) or 0, 2),
        per_conn_msgs_per_s_weighted=round(sum(c.messages for c in busy) / span, 2)
        if span
        else None,
        per_conn_target=round(target, 2),
        per_conn_ideal=round(1 / rtt, 2),
    )
    res.pop("processes", None)
    return {"mode": "wan", "volley": res}


def scale(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    n = args.scale
    spec = Spec(messages=n, domains=args.domains, seed=args.seed, small=True)
    domains = domain_names(args.domains)
    ips = sink_ips(args.sinks)
    port = free_port(ips)
    res: dict[str, Any] = {"queued": n, "workers": args.workers}
    with contextlib.ExitStack() as stack:
        dns = start_dns(stack, False)
        publish(dns, domains, ips)
        v = new_volley(root / "volley", args, dns.address, port)
        log(f"scale: writing {n:,} queue entries ...")
        t = time.monotonic()
        queue_directly(v.spool, generate(spec), args.workers)
        res["fill_s"] = round(time.monotonic() - t, 1)
        log(f"scale: queue filled in {res['fill_s']}s")
        sinks = stack.enter_context(SmtpSinks(ips, port, root / "sinks"))
        stack.callback(stop_volley, v)
        holder: dict[str, TreeSampler] = {}
        watcher = threading.Thread(target=_sample_when_started, args=(v, holder), daemon=True)
        t0 = time.monotonic()
        watcher.start()
        v.start(timeout=args.timeout)  # 10 M queued: ~15 s of start-up scans
        res["running_s"] = round(time.monotonic() - t0, 2)
        first = sinks.wait_messages(1, args.timeout, alive=lambda: running(v))
        res["first_delivery_s"] = round(first - t0, 2)
        window = args.scale_window if args.scale_window > 0 else args.timeout
        log(f"scale: first delivery after {first - t0:.1f}s; watching for {window:g}s")
        with contextlib.suppress(TimeoutError):
            end = sinks.wait_messages(n, window, alive=lambda: running(v))
            res["all_delivered_s"] = round(end - t0, 1)
        watcher.join()
        sampler = holder["sampler"].stop()
        got = sinks.messages
        elapsed = time.monotonic() - first
        res.update(
            delivered=got,
            msgs_per_s_after_first=round(got / elapsed, 1) if elapsed > 0 else None,
            peak_rss_mb=round(sampler.peak_rss / 2**20, 1),
            peak_pss_mb=round(sampler.peak_pss / 2**20, 1),
            hwm_sum_mb=round(sampler.hwm_sum / 2**20, 1),
            cpu_s=round(sampler.cpu_seconds, 1),
            processes=sampler.per_process(),
        )
        res["exit_status"] = stop_volley(v)
    return {"mode": "scale", "volley": res}


def _sample_when_started(v: Volley, holder: dict[str, TreeSampler]) -> None:
    """Start sampling as soon as `volley run` has a pid, before it reports `running`, so
    the peak of the start-up scan is seen."""
    while v.proc is None:
        time.sleep(0.005)
    holder["sampler"] = TreeSampler(v.proc.pid).start()


def locust(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    """Volley delivering while locust drops at `--locust-rate` for `--locust-time`."""
    users = args.locust_users
    duration = args.locust_time
    domains = domain_names(args.domains)
    ips = sink_ips(args.sinks)
    port = free_port(ips)
    res: dict[str, Any] = {
        "target_drop_rate": args.locust_rate,
        "users": users,
        "workers": args.workers,
    }
    with contextlib.ExitStack() as stack:
        dns = start_dns(stack, False)
        publish(dns, domains, ips)
        sinks = stack.enter_context(SmtpSinks(ips, port, root / "sinks"))
        v = new_volley(root / "volley", args, dns.address, port)
        stack.callback(stop_volley, v)
        v.start()
        assert v.proc is not None
        sampler = TreeSampler(v.proc.pid).start()
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "BENCH_INCOMING": str(v.spool / "incoming"),
            "BENCH_RATE_PER_USER": str(args.locust_rate / users),
            "BENCH_DOMAINS": str(args.domains),
            "BENCH_SEED": str(args.seed),
        }
        cmd = [sys.executable, "-m", "locust", "-f", str(REPO / "bench" / "locustfile.py")]
        cmd += ["--headless", "-u", str(users), "-r", str(users), "-t", f"{duration:g}s"]
        cmd += ["--only-summary", "--csv", str(root / "locust"), "--stop-timeout", "5"]
        res["command"] = " ".join(cmd[1:])
        timeline: list[tuple[float, int]] = []
        with open(root / "locust.out", "wb") as out:
            proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
        stack.callback(_stop_child, proc)
        t0 = time.monotonic()
        while proc.poll() is None:
            timeline.append((time.monotonic() - t0, sinks.messages))
            if time.monotonic() - t0 > duration + 120:
                raise TimeoutError("locust did not finish")
            time.sleep(0.5)
        locust_s = time.monotonic() - t0
        delivered_at_end = sinks.messages
        # Count drops on Volley's side: every drop is one "received" record once intake
        # has taken it (locust's own CSV misses requests in flight when it stops).
        incoming = v.spool / "incoming"
        wait_until(lambda: not any(n.endswith(".eml") for n in os.listdir(incoming)), 60)
        drops = count_event(v.log_path, "received")
        res.update(
            locust_exit=proc.returncode,
            locust_s=round(locust_s, 1),
            drops=drops,
            locust_reported=_locust_requests(root / "locust_stats.csv"),
        )
        drained = None
        if drops:
            with contextlib.suppress(TimeoutError):
                drained = max(0.0, sinks.wait_messages(drops, args.timeout) - t0 - locust_s)
        sampler.stop()
    # The steady window skips locust's start-up and ramp (the first 25 % of the run).
    steady = [(t, n) for t, n in timeline if t >= 0.25 * locust_s]
    sustained = None
    if len(steady) >= 2 and steady[-1][0] > steady[0][0]:
        sustained = (steady[-1][1] - steady[0][1]) / (steady[-1][0] - steady[0][0])
    res.update(
        drop_rate=round(drops / duration, 1) if drops else None,
        sustained_msgs_per_s=round(sustained, 1) if sustained is not None else None,
        backlog_at_end=drops - delivered_at_end if drops else None,
        drain_s=round(drained, 1) if drained is not None else None,
        delivered=sinks.messages,
        cpu_us_per_msg=round(sampler.cpu_seconds / max(1, sinks.messages) * 1e6, 1),
        peak_rss_mb=round(sampler.peak_rss / 2**20, 1),
    )
    return {"mode": "locust", "volley": res}


def _locust_requests(csv_path: Path) -> int:
    """The "Request Count" of locust's Aggregated row (0 if the file is missing)."""
    try:
        with open(csv_path, newline="") as fh:
            for row in csv.DictReader(fh):
                if row.get("Name") == "Aggregated":
                    return int(row["Request Count"])
    except (OSError, KeyError, ValueError):
        pass
    return 0


def _stop_child(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
