"""`python -m bench.run` (`make bench`): Volley, Postfix and the raw limit, one invocation.

Responsible for: the command line, the shared destination side (one DNS server with an MX
per workload domain, sink addresses 127.0.0.2..), running each phase against fresh sinks,
turning raw readings into the reported numbers, and printing a human summary followed by
one JSON line (always the last line of stdout). Modes: the default comparison, `--wan-rtt`
(per-connection throughput under latency), `--scale` (a large queue at start-up) and
`--locust` (a sustained drop rate driven by bench/locustfile.py).
Not responsible for: the pieces themselves (bench.workload, sinks, postfix, raw, measure),
or judging: targets are printed next to the numbers, never asserted.

Everything started here is stopped on the way out, also on errors, Ctrl-C or SIGTERM
(each piece is a context manager on one ExitStack). All sockets are on 127.0.0.0/8.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from bench.measure import PySpy, TreeSampler, hotspots
from bench.postfix import PostfixRelay
from bench.raw import run_raw
from bench.sinks import SmtpSinks, WanSink, find_tool
from bench.workload import (
    Mail,
    Spec,
    domain_names,
    drop_name,
    generate,
    queue_directly,
    write_drop,
)
from engine.config import Settings
from tests.support.dns_server import DnsServer
from tests.support.net import free_port
from tests.support.volley import Volley

__all__ = ["main"]

# Postfix reads resolv.conf, which has no port: its chrooted copy names an address in this
# /16 where the bench's DNS server listens on port 53 (root only, like Postfix itself). A
# random address per run, so two benches (two CI jobs on one machine) do not collide.
POSTFIX_DNS_NET = "127.53"
_DNS_ATTEMPTS = 50
REPO = Path(__file__).resolve().parents[1]
PHASES = ("volley", "postfix", "raw")

# The targets (printed beside the numbers; never asserted).
TARGET_RATE = 5500.0
TARGET_CPU_US = 150.0
TARGET_VS_POSTFIX = 10.0
TARGET_VS_RAW = 0.40
TARGET_SCALE_RSS_MB = 512.0
TARGET_SCALE_FIRST_S = 20.0
TARGET_WAN_FRACTION = 0.9


class Interrupted(Exception):
    """SIGTERM arrived: unwind like Ctrl-C so every `finally` stops what it started."""


def _sigterm(signum: int, frame: object) -> None:
    raise Interrupted()


# -- destination side ------------------------------------------------------------------------


def sink_ips(n: int) -> list[str]:
    if not 1 <= n <= 50:
        raise ValueError("--sinks must be 1..50")
    return [f"127.0.0.{2 + i}" for i in range(n)]


def publish(dns: DnsServer, domains: Sequence[str], ips: Sequence[str]) -> None:
    """MX 10 mx.<domain>, whose A record is one of the sink addresses (round robin)."""
    for i, d in enumerate(domains):
        dns.add_mx(d, [(10, f"mx.{d}")])
        dns.add_a(f"mx.{d}", [ips[i % len(ips)]])


def start_dns(stack: contextlib.ExitStack, port53: bool) -> DnsServer:
    """The bench's DNS server: on a random port of 127.0.0.1, or, when Postfix must reach
    it, on port 53 of a random free 127.53.x.y."""
    if not port53:
        return stack.enter_context(DnsServer())
    rng = random.Random()
    last: OSError | None = None
    for _ in range(_DNS_ATTEMPTS):
        ip = f"{POSTFIX_DNS_NET}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        try:
            return stack.enter_context(DnsServer(ip, 53))
        except OSError as e:
            last = e
    raise OSError(f"no free port 53 in {POSTFIX_DNS_NET}.0.0/16") from last


# -- Volley ---------------------------------------------------------------------------------

# Set per run by tests.support.volley.Volley (paths, ports, DNS, worker count).
_PER_RUN_KEYS = (
    ("spool", "path"),
    ("log", "path"),
    ("metrics", "listen"),
    ("smtp", "port"),
    ("smtp", "helo_name"),
    ("dns", "nameservers"),
)


def volley_config(path: str | None) -> dict[str, Any]:
    """Every setting at the engine's own default (`Settings().to_dict()`), so the bench
    measures Volley as shipped and not the short timeouts of the test helper, plus the
    TOML file `path` (--volley-config) for trying knobs."""
    cfg = Settings().to_dict()
    cfg.pop("workers", None)
    for section, key in _PER_RUN_KEYS:
        cfg.get(section, {}).pop(key, None)
    if path:
        with open(path, "rb") as fh:
            _merge(cfg, tomllib.load(fh))
    return cfg


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> None:
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            _merge(base[k], v)
        else:
            base[k] = v


def scrape(port: int) -> dict[str, float]:
    """Volley's /metrics, as {"name{label=value,...}": value} for the counters we report."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
    out: dict[str, float] = {}
    for fam in text_string_to_metric_families(text.decode()):
        for s in fam.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()) if k != "domain")
            key = f"{s.name}{{{labels}}}" if labels else s.name
            out[key] = out.get(key, 0.0) + s.value
    return out


def _count_event(log: Path, event: str) -> int:
    try:
        return log.read_bytes().count(b'"event":"%s"' % event.encode())
    except OSError:
        return 0


def wait_until(pred: Callable[[], object], timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True


def pct(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile."""
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(p / 100 * len(s) + 0.5) - 1))]


def drop_all(incoming: Path, mails: Sequence[Mail]) -> tuple[list[float], float]:
    """Drop every mail (tmp, rename); return each drop's wall time and the seconds taken."""
    times: list[float] = []
    t0 = time.monotonic()
    for m in mails:
        write_drop(incoming, drop_name(m.seq), m.data)
        times.append(time.time())
    return times, time.monotonic() - t0


def run_volley(
    args: argparse.Namespace,
    root: Path,
    dns: DnsServer,
    sinks: SmtpSinks | WanSink,
    mails: Sequence[Mail],
) -> dict[str, Any]:
    n = len(mails)
    result: dict[str, Any] = {"messages": n, "workers": args.workers}
    root.mkdir(parents=True, exist_ok=True)
    v = Volley(
        root,
        dns=dns.address,
        smtp_port=sinks.port,
        workers=args.workers,
        config=volley_config(args.volley_config),
    )
    with contextlib.ExitStack() as stack:
        stack.callback(_stop_volley, v)
        v.start()
        assert v.proc is not None
        spy = None
        if args.profile:
            gil = args.profile == "gil"
            spy = PySpy(v.proc.pid, root / "py-spy.txt", gil=gil).start(_pyspy())
            stack.callback(spy.stop)
        sampler = TreeSampler(v.proc.pid).start()
        t0 = time.monotonic()
        drop_times, drop_s = drop_all(v.spool / "incoming", mails)
        result["drop_s"] = round(drop_s, 3)
        end = sinks.wait_messages(n, args.timeout, alive=lambda: _running(v))
        first = sinks.first_message_at
        wait_until(lambda: _count_event(v.log_path, "delivered") >= n, 30)
        sampler.stop()
        wall = end - t0
        result.update(
            wall_s=round(wall, 3),
            msgs_per_s=round(n / wall, 1),
            first_delivery_s=round(first - t0, 3) if first else None,
            cpu_s=round(sampler.cpu_seconds, 3),
            cpu_us_per_msg=round(sampler.cpu_seconds / n * 1e6, 1),
            user_us_per_msg=round(sampler.user_seconds / n * 1e6, 1),
            peak_rss_mb=round(sampler.peak_rss / 2**20, 1),
            peak_pss_mb=round(sampler.peak_pss / 2**20, 1),
            processes=sampler.per_process(),
        )
        with contextlib.suppress(OSError):
            wait_until(
                lambda: scrape(v.metrics_port).get("volley_delivered_total", 0) >= n, 5, 0.25
            )
            m = scrape(v.metrics_port)
            result["connections"] = int(m.get("volley_connections_total{result=opened}", 0))
            result["transactions"] = int(m.get("volley_transactions_total", 0))
        if spy is not None:
            out = spy.stop()
            result["profile"] = {**hotspots([out]), "kind": args.profile} if out else None
        result["exit_status"] = _stop_volley(v)
    records = v.log()
    result.update(_latencies(records, mails, drop_times))
    return result


def _latencies(
    records: list[dict[str, Any]], mails: Sequence[Mail], drop_times: Sequence[float]
) -> dict[str, Any]:
    seq_of = {m.rcpt: m.seq for m in mails}
    lat: list[float] = []
    events: dict[str, int] = {}
    for r in records:
        events[r["event"]] = events.get(r["event"], 0) + 1
        if r["event"] == "delivered" and r.get("rcpt") in seq_of:
            lat.append(r["ts"] - drop_times[seq_of[r["rcpt"]]])
    p50, p99 = pct(lat, 50), pct(lat, 99)
    return {
        "delivered": events.get("delivered", 0),
        "events": events,
        "latency_p50_ms": round(p50 * 1000, 1) if p50 is not None else None,
        "latency_p99_ms": round(p99 * 1000, 1) if p99 is not None else None,
    }


def _running(v: Volley) -> bool:
    return v.proc is not None and v.proc.poll() is None


def _stop_volley(v: Volley) -> int | None:
    if v.proc is None:
        return None
    if v.proc.poll() is not None:
        return v.proc.returncode
    try:
        return v.stop(timeout=120)
    except AssertionError:
        return None  # it was killed: stop() already SIGKILLed every process


def _pyspy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(found).exists():
        raise FileNotFoundError("--profile needs py-spy: .venv/bin/pip install py-spy")
    return found


# -- Postfix and raw -------------------------------------------------------------------------


def run_postfix(
    args: argparse.Namespace,
    dns: DnsServer,
    sinks: SmtpSinks,
    mails: Sequence[Mail],
    domains: Sequence[str],
) -> dict[str, Any]:
    # Postfix commands reach postlogd through <queue>/public/postlog, a unix socket named by
    # its absolute path, and sun_path holds 108 bytes: under a deep work directory (pytest's
    # tmp_path) `postfix start` dies with "unix-domain name too long". So the instance
    # lives in a short directory of its own, removed afterwards like the work directory.
    with _temporary_dir(args, "volley-bench-pf-", "/tmp") as root:
        return _run_postfix(args, root, dns, sinks, mails, domains)


def _run_postfix(
    args: argparse.Namespace,
    root: Path,
    dns: DnsServer,
    sinks: SmtpSinks,
    mails: Sequence[Mail],
    domains: Sequence[str],
) -> dict[str, Any]:
    n = len(mails)
    relay = PostfixRelay(
        root,
        dns_ip=dns.host,
        smtp_port=sinks.port,
        inject_port=free_port(["127.0.0.1"]),
        domains=domains,
        concurrency=args.postfix_concurrency,
        active_limit=max(20_000, n),
    )
    with relay:
        inject_s = relay.inject(mails)
        master = relay.master_pid
        assert master is not None
        sampler = TreeSampler(master).start()
        queries0 = dns.queries()
        t0 = time.monotonic()
        relay.release()
        try:
            end = sinks.wait_messages(n, args.timeout)
        except TimeoutError as e:
            raise TimeoutError(f"{e}; postfix log:\n{relay.log_tail()}") from None
        sampler.stop()
        wall = end - t0
        queries = dns.queries() - queries0
    sinks.wait_quiet(1, 5)
    return {
        "messages": n,
        "inject_s": round(inject_s, 3),
        "wall_s": round(wall, 3),
        "msgs_per_s": round(n / wall, 1),
        "cpu_s": round(sampler.cpu_seconds, 3),
        "cpu_us_per_msg": round(sampler.cpu_seconds / n * 1e6, 1),
        "user_us_per_msg": round(sampler.user_seconds / n * 1e6, 1),
        "peak_rss_mb": round(sampler.peak_rss / 2**20, 1),
        "peak_pss_mb": round(sampler.peak_pss / 2**20, 1),
        "processes": sampler.processes,
        "dns_queries": queries,
        "concurrency_limit": args.postfix_concurrency,
        "instance_dir": str(root),
    }


# -- modes ----------------------------------------------------------------------------------


def workdir(args: argparse.Namespace) -> contextlib.AbstractContextManager[Path]:
    base = Path(args.workdir) if args.workdir else None
    if base is not None:
        base.mkdir(parents=True, exist_ok=True)
    return _temporary_dir(args, "volley-bench-", base)


@contextlib.contextmanager
def _temporary_dir(
    args: argparse.Namespace, prefix: str, base: Path | str | None
) -> Iterator[Path]:
    """A fresh directory, removed afterwards unless --keep or an error (not Ctrl-C/SIGTERM):
    then its path is printed, for the logs inside."""
    root = Path(tempfile.mkdtemp(prefix=prefix, dir=base))
    keep = args.keep
    try:
        yield root
    except (KeyboardInterrupt, Interrupted, SystemExit):
        raise
    except BaseException:
        keep = True  # an error: keep the logs (volley.out, postfix.log, sink errors)
        raise
    finally:
        if keep:
            print(f"bench: directory kept: {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)


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
            if phase not in phases:
                continue
            _log(f"{phase}: {len(mails)} messages ...")
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
            _log(f"{phase}: {res['msgs_per_s']} msg/s")
    ratios: dict[str, float] = {}
    vr = out.get("volley", {}).get("msgs_per_s")
    for other in ("postfix", "raw"):
        o = out.get(other, {}).get("msgs_per_s")
        if vr and o:
            ratios[f"volley_vs_{other}"] = round(vr / o, 3)
    out["ratios"] = ratios
    return out


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
    target = TARGET_WAN_FRACTION / (2 * rtt)
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
        per_conn_ideal=round(1 / (2 * rtt), 2),
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
        vroot = root / "volley"
        vroot.mkdir(parents=True, exist_ok=True)
        v = Volley(
            vroot,
            dns=dns.address,
            smtp_port=port,
            workers=args.workers,
            config=volley_config(args.volley_config),
        )
        _log(f"scale: writing {n:,} queue entries ...")
        t = time.monotonic()
        queue_directly(v.spool, generate(spec), args.workers)
        res["fill_s"] = round(time.monotonic() - t, 1)
        _log(f"scale: queue filled in {res['fill_s']}s")
        sinks = stack.enter_context(SmtpSinks(ips, port, root / "sinks"))
        stack.callback(_stop_volley, v)
        holder: dict[str, TreeSampler] = {}
        watcher = threading.Thread(target=_sample_when_started, args=(v, holder), daemon=True)
        t0 = time.monotonic()
        watcher.start()
        v.start()
        res["running_s"] = round(time.monotonic() - t0, 2)
        first = sinks.wait_messages(1, args.timeout, alive=lambda: _running(v))
        res["first_delivery_s"] = round(first - t0, 2)
        window = args.scale_window if args.scale_window > 0 else args.timeout
        _log(f"scale: first delivery after {first - t0:.1f}s; watching for {window:g}s")
        with contextlib.suppress(TimeoutError):
            end = sinks.wait_messages(n, window, alive=lambda: _running(v))
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
        res["exit_status"] = _stop_volley(v)
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
        vroot = root / "volley"
        vroot.mkdir(parents=True, exist_ok=True)
        v = Volley(
            vroot,
            dns=dns.address,
            smtp_port=port,
            workers=args.workers,
            config=volley_config(args.volley_config),
        )
        stack.callback(_stop_volley, v)
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
        drops = _count_event(v.log_path, "received")
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


# -- output -----------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "commit": _commit(),
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load_avg_1m_at_end": round(os.getloadavg()[0], 2),
    }


def _commit() -> str | None:
    """HEAD of the repository, "+" if engine/ or spool/ have uncommitted changes (read only)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "engine", "spool"],
            cwd=REPO,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return None
    return f"{head}+" if head and dirty else head or None


def _log(text: str) -> None:
    print(f"bench: {text}", file=sys.stderr, flush=True)


def _fmt(v: Any, unit: str = "") -> str:
    return "-" if v is None else f"{v:,}{unit}" if isinstance(v, int | float) else str(v)


def summary(res: dict[str, Any]) -> str:
    m = res["machine"]
    lines = [
        f"Volley bench ({res['mode']}) {res['date']}, commit {m['commit']}, {m['cpus']} CPUs, load "
        f"{m['load_avg_1m_at_start']} at start, {m['load_avg_1m_at_end']} at end"
    ]
    v = res.get("volley", {})
    if res["mode"] == "compare":
        lines.append(f"{'':<10}{'msg/s':>10}{'wall s':>9}{'CPU µs/msg':>12}{'peak RSS MB':>13}")
        for name in PHASES:
            r = res.get(name)
            if r:
                lines.append(
                    f"{name:<10}{_fmt(r.get('msgs_per_s')):>10}{_fmt(r.get('wall_s')):>9}"
                    f"{_fmt(r.get('cpu_us_per_msg')):>12}{_fmt(r.get('peak_rss_mb')):>13}"
                )
        if v:
            lines.append(
                f"volley: drop→delivered p50 {_fmt(v.get('latency_p50_ms'), ' ms')}, "
                f"p99 {_fmt(v.get('latency_p99_ms'), ' ms')}; {_fmt(v.get('connections'))} "
                f"connections; producer dropped all in {_fmt(v.get('drop_s'))} s; "
                f"delivered {_fmt(v.get('delivered'))}/{_fmt(v.get('messages'))}"
            )
            lines.append(
                f"targets: ≥{TARGET_RATE:,.0f} msg/s, ≤{TARGET_CPU_US:.0f} µs/msg, "
                f"≥{TARGET_VS_POSTFIX:.0f}x Postfix, ≥{TARGET_VS_RAW:.0%} of raw"
            )
        for k, r in res.get("ratios", {}).items():
            lines.append(f"{k.replace('_', ' ')}: {r:.2f}x")
        prof = v.get("profile")
        if prof:
            lines.append(f"profile ({prof['samples']} samples, {prof['kind']}), self time:")
            lines += [f"  {p:5.1f}%  {f}" for f, p in prof["self"]]
            lines.append("inclusive:")
            lines += [f"  {p:5.1f}%  {f}" for f, p in prof["inclusive"]]
    elif res["mode"] == "wan":
        lines.append(
            f"RTT {v['rtt_ms']} ms: {v['msgs_per_s']} msg/s over {v['sink_connections']} "
            f"connections; per connection p50 {v['per_conn_msgs_per_s_p50']}, p10 "
            f"{v['per_conn_msgs_per_s_p10']}, weighted {v['per_conn_msgs_per_s_weighted']} "
            f"msg/s (target ≥ {v['per_conn_target']}, ideal {v['per_conn_ideal']}; "
            f"{v['measured_connections']} connections with ≥ {res['wan_min_messages']} messages)"
        )
    elif res["mode"] == "scale":
        lines.append(
            f"{v['queued']:,} queued (filled in {v['fill_s']} s): first delivery "
            f"{v['first_delivery_s']} s after `volley run` (target ≤ {TARGET_SCALE_FIRST_S:.0f}"
            f" s); peak RSS {v['peak_rss_mb']} MB (PSS {v['peak_pss_mb']} MB; target ≤ "
            f"{TARGET_SCALE_RSS_MB:.0f} MB); {v['delivered']:,} delivered, "
            f"{_fmt(v['msgs_per_s_after_first'])} msg/s after the first"
        )
    elif res["mode"] == "locust":
        lines.append(
            f"locust: {_fmt(v.get('drops'))} drops at {_fmt(v.get('drop_rate'))}/s for "
            f"{_fmt(v.get('locust_s'))} s; delivered at {_fmt(v.get('sustained_msgs_per_s'))} "
            f"msg/s in the steady window; backlog at end {_fmt(v.get('backlog_at_end'))}, "
            f"drained in {_fmt(v.get('drain_s'))} s"
        )
    return "\n".join(lines)


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
        help="comma-separated phases of the comparison: volley,postfix,raw (default all)",
    )
    p.add_argument("--volley-config", help="TOML merged into Volley's config (try knobs)")
    p.add_argument("--postfix-concurrency", type=int, default=20)
    p.add_argument("--raw-sessions", type=int, default=20, help="smtp-source connections")
    p.add_argument(
        "--profile",
        nargs="?",
        const="wall",
        choices=("wall", "gil"),
        help="py-spy the Volley phase: wall (threads not idle, incl. syscalls; default) "
        "or gil (Python CPU only)",
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
