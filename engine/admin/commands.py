"""The operator commands: `volley suspend|resume|flush|bounce|delete|show` and
`volley queue --list`, each a call to the admin API and a readable (or --json) answer.

Responsible for: their arguments (names are a contract: other tools drive Volley through
them), the request each sends, and printing the answer.  Every command takes --config
and --spool like `volley run`, from which engine.admin.client finds the API and token.
Not responsible for: validation beyond argument shapes (the API answers a bad request with
one line, which is printed as is), or `volley queue` without --list (engine.cli reads
the spool for that summary and needs no running Volley).

Exit status: 0 done, 1 the call failed (Volley not running, token refused, unknown id),
2 a usage or configuration error.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
import time
from datetime import datetime
from typing import Any

from engine.admin.client import AdminClient, AdminError
from engine.config import Settings

__all__ = ["COMMANDS", "add_parsers", "add_queue_list_options", "run"]

COMMANDS = ("suspend", "resume", "flush", "bounce", "delete", "show")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="TOML configuration file (as given to volley run)")
    p.add_argument("--spool", help="spool directory (spool.path)")
    p.add_argument("--json", action="store_true", help="print the API's JSON answer")


def _selectors(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--domain", metavar="D", help="every queued message to destination D")
    g.add_argument("--id", metavar="ID", help="one message (its id in the log or --list)")
    g.add_argument("--sender", metavar="ADDR", help="every queued message from ADDR (<> : DSNs)")
    g.add_argument("--all", action="store_true", help="the whole queue (must be said)")
    p.add_argument("--reason", metavar="TEXT", help="why (in the log, and a bounce's text)")


def add_parsers(sub: Any) -> None:
    """Add the commands to `volley`'s subparsers."""
    p = sub.add_parser(
        "suspend", help="no new connections to a destination until resumed or expired"
    )
    p.add_argument("domain", nargs="?", metavar="DOMAIN")
    p.add_argument("--duration", default="1h", help="how long (30m, 1h, 2d; default 1h)")
    p.add_argument("--reason", metavar="TEXT", help="why (in the log and the listing)")
    p.add_argument("--list", action="store_true", help="list the suspensions in effect")
    _common(p)
    p = sub.add_parser("resume", help="end a destination's suspension now")
    p.add_argument("domain", metavar="DOMAIN")
    _common(p)
    p = sub.add_parser("flush", help="retry deferred mail now (all, or one destination's)")
    p.add_argument("domain", nargs="?", metavar="DOMAIN")
    _common(p)
    p = sub.add_parser("bounce", help="remove queued mail with a DSN to each sender")
    _selectors(p)
    _common(p)
    p = sub.add_parser("delete", help="remove queued mail without a DSN")
    _selectors(p)
    _common(p)
    p = sub.add_parser("show", help="one message: envelope, headers, state and history")
    p.add_argument("id", metavar="ID")
    _common(p)


def add_queue_list_options(p: argparse.ArgumentParser) -> None:
    """`volley queue --list [--domain D] [--limit N]` (beside its summary's options)."""
    p.add_argument("--list", action="store_true", help="list queued messages (needs Volley)")
    p.add_argument("--domain", metavar="D", help="with --list: one destination's")
    p.add_argument("--limit", type=int, default=None, help="with --list: at most N (1000)")


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Run `args.command` (one of COMMANDS, or queue --list) against the running Volley."""
    try:
        client = AdminClient.from_settings(settings)
        if args.command == "queue":
            got = client.call(
                "GET", "/v1/queue", query={"domain": args.domain, "limit": args.limit}
            )
            printer = _print_list
        elif args.command == "suspend" and (args.list or args.domain is None):
            if args.domain is not None:
                print("volley: suspend: give DOMAIN or --list, not both", file=sys.stderr)
                return 2
            got, printer = client.call("GET", "/v1/suspensions"), _print_suspensions
        elif args.command == "suspend":
            body = {"domain": args.domain, "duration": args.duration, "reason": args.reason}
            got, printer = client.call("POST", "/v1/suspend", _by(body)), _print_suspended
        elif args.command == "resume":
            got = client.call("POST", "/v1/resume", _by({"domain": args.domain}))
            printer = _print_resumed
        elif args.command == "flush":
            got = client.call("POST", "/v1/flush", _by({"domain": args.domain}))
            printer = _print_flushed
        elif args.command in ("bounce", "delete"):
            body = {
                "domain": args.domain,
                "id": args.id,
                "sender": args.sender,
                "all": args.all or None,
                "reason": args.reason,
            }
            body = {k: v for k, v in body.items() if v is not None}
            got = client.call("POST", f"/v1/{args.command}", _by(body))
            printer = _print_removed
        else:
            got = client.call("GET", f"/v1/messages/{args.id}")
            printer = _print_show
    except AdminError as e:
        print(f"volley: {args.command}: {e}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(got, indent=2, ensure_ascii=False))
    else:
        printer(got)
    return 1 if got.get("errors") or got.get("workers_missing") else 0


def _by(body: dict[str, Any]) -> dict[str, Any]:
    try:
        body["by"] = getpass.getuser()
    except (KeyError, OSError):  # no login name (a container without /etc/passwd entry)
        pass
    return body


# -- output --------------------------------------------------------------------------------
def _when(ts: float | None, now: float | None = None) -> str:
    """Local time and how far from now: "2025-05-01 14:03:00 (in 59m)"."""
    if ts is None:
        return "-"
    now = time.time() if now is None else now
    stamp = datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")
    delta = ts - now
    return f"{stamp} ({'in ' + _span(delta) if delta >= 0 else _span(-delta) + ' ago'})"


def _span(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


def _warn_partial(got: dict[str, Any]) -> None:
    for k, err in (got.get("errors") or {}).items():
        print(f"volley: worker {k}: {err}", file=sys.stderr)
    if got.get("workers_missing"):
        missing = ", ".join(str(k) for k in got["workers_missing"])
        print(f"volley: no answer from worker(s) {missing}; the result is partial", file=sys.stderr)


def _print_suspended(got: dict[str, Any]) -> None:
    s = got["suspended"]
    why = f": {s['reason']}" if s.get("reason") else ""
    print(f"suspended {s['domain']} until {_when(s['until'])}{why}")


def _print_suspensions(got: dict[str, Any]) -> None:
    items = got.get("suspensions", [])
    if not items:
        print("no destination is suspended")
    for s in items:
        why = f"  {s['reason']}" if s.get("reason") else ""
        by = f"  (by {s['by']})" if s.get("by") else ""
        print(f"{s['domain']:<40} until {_when(s['until'])}{why}{by}")


def _print_resumed(got: dict[str, Any]) -> None:
    if got.get("was_suspended"):
        print(f"resumed {got['domain']}")
    else:
        print(f"{got['domain']} was not suspended")


def _print_flushed(got: dict[str, Any]) -> None:
    where = got.get("domain") or "all destinations"
    print(f"flushed {got['flushed']} deferred entries ({where}): retried now")
    _warn_partial(got)


def _print_removed(got: dict[str, Any]) -> None:
    verb = "bounced" if got["action"] == "bounce" else "deleted"
    dsn = ", a DSN to each sender" if got["action"] == "bounce" else ", no DSN"
    print(f"{verb} {got['removed']} queued entries ({got['recipients']} recipients{dsn})")
    if got.get("in_flight"):
        print(
            f"{got['in_flight']} entries are being sent now: {verb} when their current attempt "
            "ends, unless it delivers them"
        )
    _warn_partial(got)


def _print_list(got: dict[str, Any]) -> None:
    now = time.time()
    for e in got["entries"]:
        if "error" in e:
            print(f"{e['id']}  {e['domain']}  {e['state']}  ({e['error']})")
            continue
        nxt = "" if e["next_attempt"] is None else f"  next {_when(e['next_attempt'], now)}"
        print(f"{e['id']}  {e['domain']}  {e['state']}  attempts {e['attempts']}{nxt}")
        print(f"    from {e['sender'] or '<>'}")
        print(f"    to   {', '.join(e['recipients'])}")
        if e.get("last"):
            last = e["last"]
            reply = f"{last.get('code')} {last.get('enhanced')} {last.get('text')}{_cat(last)}"
            print(f"    last {reply}")
    shown, total = len(got["entries"]), got["total"]
    more = f" (showing the oldest {shown}; --limit for more)" if got.get("truncated") else ""
    print(f"{total} queued entries{more}")
    _warn_partial(got)


def _print_show(got: dict[str, Any]) -> None:
    now = time.time()
    entries = got["entries"]
    print(f"message {got['id']}")
    first = next((e for e in entries if "error" not in e), None)
    if first is not None:
        print(f"  sender   {first['sender'] or '<>'}")
        print(f"  msgid    {first.get('msgid') or '-'}")
        print(f"  queued   {_when(first.get('created'), now)}")
        print(f"  size     {first['size']} bytes")
    if not entries:
        print("  not queued (finished: see the history)")
    for e in entries:
        print(f"{e['domain']}: {e['state']}")
        if "error" in e:
            print(f"    {e['error']}")
            continue
        print(f"    recipients    {', '.join(e['recipients'])}")
        print(f"    attempts      {e['attempts']}")
        if e["next_attempt"] is not None:
            print(f"    next attempt  {_when(e['next_attempt'], now)}")
        if e.get("last"):
            last = e["last"]
            reply = f"{last.get('code')} {last.get('enhanced')} {last.get('text')}{_cat(last)}"
            print(f"    last reply    {reply}")
    if first is not None and first.get("headers"):
        print("headers:")
        for line in first["headers"].splitlines():
            print(f"    {line}")
    print("history:")
    for rec in got.get("history", []):
        stamp = datetime.fromtimestamp(rec["ts"]).strftime("%Y-%m-%d %H:%M:%S")
        parts = [rec.get("rcpt") or "", rec.get("domain") or ""]
        if rec.get("code"):
            reply = f"{rec['code']} {rec.get('enhanced', '')} {rec.get('text', '')}{_cat(rec)}"
            parts.append(reply.strip())
        if rec.get("mx"):
            parts.append(f"via {rec['mx']}")
        if rec.get("reason"):
            parts.append(str(rec["reason"]))
        print(f"    {stamp}  {rec['event']:<10} {'  '.join(p for p in parts if p)}")
    _warn_partial(got)


def _cat(record: dict[str, Any]) -> str:
    """The bounce category of a failure's record or last reply, as " [Category]"."""
    category = record.get("category")
    return f" [{category}]" if category else ""
