"""Command line: `volley run`, `volley queue`, `volley top` and the operator commands.

Responsible for: argument parsing, turning flags into configuration overrides, printing
configuration errors as one clear line (exit status 2), and formatting `volley queue`.
Not responsible for: running anything itself (engine.runtime.supervisor), reading the
spool's formats (spool.queue_summary reads names and mtimes only), the operator
commands that talk to a running Volley (`suspend`, `resume`, `flush`, `bounce`, `delete`,
`show`, `queue --list`: engine.admin.commands), `volley passwd` (engine.smtpd.passwd)
or `volley suppress` (engine.suppress.commands).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from engine.admin import commands as admin
from engine.auth import keygen as dkim_keygen
from engine.config import ConfigError, Settings, load_settings
from engine.smtpd import passwd
from engine.suppress import commands as suppress

__all__ = ["main"]


def _version() -> str:
    try:
        return version("volley")
    except PackageNotFoundError:
        return "0"


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    if args.spool is not None:
        overrides["spool.path"] = args.spool
    if getattr(args, "workers", None) is not None:
        overrides["workers"] = args.workers
    if getattr(args, "dns", None):
        overrides["dns.nameservers"] = args.dns
    if getattr(args, "smtp_port", None) is not None:
        overrides["smtp.port"] = args.smtp_port
    return load_settings(args.config, overrides)


def _run_settings(args: argparse.Namespace) -> Settings:
    """`_settings` for `volley run` and its reloads: the DKIM keys must load too (a
    missing key is a configuration error, not a failure of every message)."""
    from engine.auth.dkim import check_keys

    settings = _settings(args)
    check_keys(settings)
    return settings


def _age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


_SHAPED = {
    "volley_shaping_connections": "connections",
    "volley_shaping_message_rate": "msg/s",
    "volley_shaping_suspended_until_timestamp_seconds": "until",
}


def _live(settings: Settings) -> tuple[dict[str, str], dict[str, dict[str, float]]] | None:
    """From the running engine's /metrics: what holds each destination back now
    (volley_queue_throttled: domain -> "rate" / "connection" / "shaping" / "warmup") and
    the limits adaptive shaping has in force per site (volley_shaping_*); None when no
    engine answers (the spool's counts are shown all the same)."""
    from engine.telemetry import top

    try:
        scrape = top.fetch(top.metrics_url(settings.metrics_listen), timeout=1.0)
    except (OSError, ValueError):
        return None
    waits: dict[str, set[str]] = {}
    sites: dict[str, dict[str, float]] = {}
    for (name, labels), value in scrape.samples.items():
        d = dict(labels)
        if name == "volley_queue_throttled" and value > 0:
            waits.setdefault(d["domain"], set()).add(d["reason"])
        elif name in _SHAPED:
            sites.setdefault(d["site"], {})[_SHAPED[name]] = value
    return {domain: ",".join(sorted(r)) for domain, r in waits.items()}, sites


def _print_shaped(sites: dict[str, dict[str, float]], now: float) -> None:
    if not sites:
        return
    print("\nadaptive shaping in force (volley_shaping_*):")
    print(f"{'site':<48} {'connections':>11} {'msg/s':>9}  suspended")
    for site, v in sorted(sites.items()):
        conns = f"{v['connections']:.0f}" if "connections" in v else "-"
        rate = f"{v['msg/s']:.3g}" if "msg/s" in v else "-"
        until = f"for {_age(v['until'] - now)}" if v.get("until", 0) > now else "-"
        print(f"{site:<48} {conns:>11} {rate:>9}  {until}")


def cmd_queue(settings: Settings, as_json: bool) -> int:
    from spool import queue_summary

    if not (settings.spool_path / "queue").is_dir():
        # An empty table for a typo'd path would say "nothing queued" about a spool that
        # was never looked at.
        print(f"volley: no spool at {settings.spool_path} (spool.path)", file=sys.stderr)
        return 1
    now = time.time()
    summary = queue_summary(settings.spool_path, now)
    rows = sorted(summary.items(), key=lambda kv: -(kv[1].queued + kv[1].deferred))
    live = _live(settings)
    waits = None if live is None else live[0]
    if as_json:
        out = {
            domain: {
                "queued": s.queued,
                "deferred": s.deferred,
                "oldest_age": round(now - s.oldest_id_time, 3),
                "next_attempt": s.next_attempt,
                "waiting_for": None if waits is None else waits.get(domain),
            }
            for domain, s in rows
        }
        print(json.dumps(out, indent=2))
        return 0
    print(
        f"{'domain':<40} {'queued':>8} {'deferred':>9} {'oldest':>8}  {'next retry':<12}"
        " waiting for"
    )
    tq = td = 0
    for domain, s in rows:
        tq += s.queued
        td += s.deferred
        nxt = "-" if s.next_attempt is None else f"in {_age(s.next_attempt - now)}"
        wait = "?" if waits is None else waits.get(domain, "-")
        age = _age(now - s.oldest_id_time)
        print(f"{domain:<40} {s.queued:>8} {s.deferred:>9} {age:>8}  {nxt:<12} {wait}")
    print(f"{'total':<40} {tq:>8} {td:>9}")
    if live is None:
        print("(waiting for: ? - no running engine answered on metrics.listen)")
    else:
        _print_shaped(live[1], now)
    return 0


def cmd_top(settings: Settings, url: str | None, interval: float, once: bool) -> int:
    from engine.telemetry import top

    return top.run(url or top.metrics_url(settings.metrics_listen), interval=interval, once=once)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="volley", description="Outbound bulk mail delivery engine.")
    p.add_argument("--version", action="version", version=f"volley {_version()}")
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the engine in the foreground (Ctrl-C stops it cleanly)")
    run.add_argument("--config", help="TOML configuration file")
    run.add_argument("--spool", help="spool directory (spool.path)")
    run.add_argument("--workers", type=int, help="worker processes (workers)")
    run.add_argument(
        "--dns",
        action="append",
        metavar="IP[:PORT]",
        help="DNS server (dns.nameservers); repeatable",
    )
    run.add_argument("--smtp-port", type=int, help="destination SMTP port (smtp.port)")
    q = sub.add_parser("queue", help="per-domain queue counts, oldest message, next retry")
    q.add_argument("--config", help="TOML configuration file")
    q.add_argument("--spool", help="spool directory (spool.path)")
    q.add_argument("--json", action="store_true", help="machine-readable output")
    admin.add_queue_list_options(q)
    top = sub.add_parser("top", help="live view of send rates, queue and destinations (/metrics)")
    top.add_argument("--config", help="TOML configuration file (for metrics.listen)")
    top.add_argument("--url", help="metrics URL (default: from metrics.listen)")
    top.add_argument("--interval", type=float, default=1.0, help="seconds between refreshes")
    top.add_argument("--once", action="store_true", help="print one frame and exit")
    top.set_defaults(spool=None)
    admin.add_parsers(sub)
    passwd.add_parser(sub)
    dkim_keygen.add_parser(sub)
    suppress.add_parser(sub)
    args = p.parse_args(argv)
    if args.command == "dkim":
        return dkim_keygen.run(args)
    try:
        settings = _run_settings(args) if args.command == "run" else _settings(args)
    except ConfigError as e:
        print(f"volley: configuration error: {e}", file=sys.stderr)
        return 2
    if args.command in admin.COMMANDS or (args.command == "queue" and args.list):
        return admin.run(args, settings)
    if args.command == "suppress":
        return suppress.run(args, settings)
    if args.command == "queue" and (args.domain or args.limit is not None):
        print("volley: queue: --domain and --limit go with --list", file=sys.stderr)
        return 2
    if args.command == "queue":
        return cmd_queue(settings, args.json)
    if args.command == "passwd":
        return passwd.run(args, settings)
    if args.command == "top":
        return cmd_top(settings, args.url, args.interval, args.once)
    from engine.runtime.supervisor import run as run_supervisor

    return run_supervisor(settings, _version(), reload=lambda: _run_settings(args))


if __name__ == "__main__":
    sys.exit(main())
