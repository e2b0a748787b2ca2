"""The phases the bench times: the destination side, Volley, and Postfix.

Responsible for: the shared destination side (one DNS server with an MX per workload
domain, sink addresses 127.0.0.2..), running Volley (`run_volley`: start it, drop the
workload, wait for the sinks, read its metrics and log) and Postfix (`run_postfix`)
against sinks the caller started, turning raw readings into the reported numbers, and the
fresh work directories they run in (removed afterwards unless --keep or an error).
Not responsible for: the raw phase (bench.raw), the pieces themselves (bench.workload,
sinks, postfix, measure), which modes run which phase (bench.run, bench.modes), or
printing anything (bench.report).

Everything started here is stopped on the way out, also on errors, Ctrl-C or SIGTERM
(each piece is a context manager or an ExitStack callback). All sockets are on 127.0.0.0/8.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import shutil
import sys
import tempfile
import time
import tomllib
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from bench import threads
from bench.measure import PySpy, TreeSampler, hotspots
from bench.postfix import PostfixRelay
from bench.sinks import SmtpSinks
from bench.wan_sink import WanSink
from bench.workload import SENDER, Mail, drop_name, write_drop
from engine.auth.keygen import keygen
from engine.config import Settings
from tests.support.dns_server import DnsServer
from tests.support.net import free_port
from tests.support.volley import Volley

__all__ = [
    "PHASES",
    "REPO",
    "Interrupted",
    "count_event",
    "pct",
    "publish",
    "run_postfix",
    "run_volley",
    "running",
    "sink_ips",
    "start_dns",
    "stop_volley",
    "temporary_dir",
    "volley_config",
    "wait_until",
]

# Postfix reads resolv.conf, which has no port: its chrooted copy names an address in this
# /16 where the bench's DNS server listens on port 53 (root only, like Postfix itself). A
# random address per run, so two benches (two CI jobs on one machine) do not collide.
POSTFIX_DNS_NET = "127.53"
_DNS_ATTEMPTS = 50
REPO = Path(__file__).resolve().parents[1]  # locust's PYTHONPATH; `git` for the commit measured
PHASES = ("volley", "postfix", "raw", "listener")


class Interrupted(Exception):
    """SIGTERM arrived: unwind like Ctrl-C so every `finally` stops what it started."""


# -- work directories ------------------------------------------------------------------------


@contextlib.contextmanager
def temporary_dir(args: argparse.Namespace, prefix: str, base: Path | str | None) -> Iterator[Path]:
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

SENDER_DOMAIN = SENDER.rpartition("@")[2]

# Set per run by tests.support.volley.Volley (paths, ports, DNS, worker count).
_PER_RUN_KEYS = (
    ("spool", "path"),
    ("log", "path"),
    ("metrics", "listen"),
    # A free port per run: the engine's default 9109 may be taken by another instance.
    ("admin", "listen"),
    ("smtp", "port"),
    ("smtp", "helo_name"),
    ("dns", "nameservers"),
    # Loopback receivers: the engine refuses 127.0.0.0/8 targets by default.
    ("smtp", "ignore_target_hosts"),
    # No SMTP listener unless a phase wants one (its default port would clash).
    ("smtpd", "listen"),
)


def new_volley(root: Path, args: argparse.Namespace, dns_address: str, port: int) -> Volley:
    """A Volley instance under `root` (created), at the engine's defaults plus
    --volley-config, talking to the bench's DNS and receivers; not started."""
    root.mkdir(parents=True, exist_ok=True)
    config = volley_config(args.volley_config)
    if getattr(args, "dkim", None):
        # --dkim rsa|ed25519: sign every message at intake with a fresh key.
        key = keygen(SENDER_DOMAIN, "bench", args.dkim, 2048, root / "dkim")
        config["dkim"] = {SENDER_DOMAIN: {"selector": "bench", "key": str(key)}}
    return Volley(root, dns=dns_address, smtp_port=port, workers=args.workers, config=config)


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


def count_event(log: Path, event: str) -> int:
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
    v = new_volley(root, args, dns.address, sinks.port)
    with contextlib.ExitStack() as stack:
        stack.callback(stop_volley, v)
        v.start()
        assert v.proc is not None
        spy = None
        if args.profile:
            gil = args.profile == "gil"
            spy = PySpy(v.proc.pid, root / "py-spy.txt", gil=gil).start(_pyspy())
            stack.callback(spy.stop)
        sampler = TreeSampler(v.proc.pid).start()
        before = threads.take(v.proc.pid) if getattr(args, "threads", False) else None
        t0 = time.monotonic()
        drop_times, drop_s = drop_all(v.spool / "incoming", mails)
        result["drop_s"] = round(drop_s, 3)
        end = sinks.wait_messages(n, args.timeout, alive=lambda: running(v))
        first = sinks.first_message_at
        wait_until(lambda: count_event(v.log_path, "delivered") >= n, 30)
        sampler.stop()
        if before is not None:
            after = threads.take(v.proc.pid)
            named = {pid: threads.names(pid, _pyspy()) for pid in {p for p, _ in after.ticks}}
            result["threads"] = threads.per_thread(before, after, named, n)
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
        result["exit_status"] = stop_volley(v)
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


def running(v: Volley) -> bool:
    return v.proc is not None and v.proc.poll() is None


def stop_volley(v: Volley) -> int | None:
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


# -- Postfix ---------------------------------------------------------------------------------


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
    with temporary_dir(args, "volley-bench-pf-", "/tmp") as root:
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
