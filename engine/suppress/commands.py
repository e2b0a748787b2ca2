"""`volley suppress add|remove|list|check ADDR|import FILE|export`: the list from the shell.

Responsible for: the subcommands' arguments (names are a contract), choosing how to
reach the list, and printing answers (readable, or the API's JSON with --json):
  * while `volley run` owns the spool (its instance lock on <spool>/volley.pid is held),
    through the admin API (engine.suppress.api): the supervisor is the one writer;
  * while it does not, directly in <spool>/suppression.db, holding that same lock for
    the command's duration, so a `volley run` started meanwhile refuses to start (it
    says which pid holds the spool) rather than write beside it.
Either way each change is a record in the delivery log.
Not responsible for: the CSV format (engine.suppress.csvio) or the store.

Exit status: 0 done (for `check`: the address is NOT suppressed), 1 a failure (or, for
`check`, the address IS suppressed: `if volley suppress check a@b; then send; fi`), 2 a
usage or configuration error.
"""

from __future__ import annotations

import argparse
import fcntl
import getpass
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from engine.admin.client import AdminClient, AdminError
from engine.config import ConfigError, Settings, parse_duration
from engine.suppress.api import check_answer
from engine.suppress.csvio import CsvError, format_time, read_entries, write_rows
from engine.suppress.model import GLOBAL, BadEntry, Entry, Source, parse_scope, parse_target
from engine.suppress.store import SqliteSuppressionStore, StoreError, db_path
from engine.telemetry.eventlog import EventLog
from spool.instance import PID_FILE

__all__ = ["add_parser", "run"]

PAGE = 10_000  # entries per page when listing or exporting through the API
CHUNK_BYTES = 48 * 1024  # JSON per import request (the admin API takes 64 KB a request)


class Failed(Exception):
    """One line for stderr; exit status 1."""


def add_parser(sub: Any) -> None:
    p = sub.add_parser("suppress", help="the suppression list: add, remove, list, check, ...")
    cmds = p.add_subparsers(dest="action", required=True)

    def common(c: argparse.ArgumentParser) -> None:
        c.add_argument("--config", help="TOML configuration file (as given to volley run)")
        c.add_argument("--spool", help="spool directory (spool.path)")
        c.add_argument("--json", action="store_true", help="print the API's JSON answer")

    c = cmds.add_parser("add", help="suppress an address, or a whole domain (example.com)")
    c.add_argument("address", metavar="ADDR")
    c.add_argument("--scope", help="only for mail from this sender domain (default: global)")
    c.add_argument("--reason", help="why (kept with the entry)")
    c.add_argument("--expires", metavar="DURATION", help="ends by itself after 30d, 12h, ...")
    common(c)
    c = cmds.add_parser("remove", help="remove an address's entries (every scope unless --scope)")
    c.add_argument("address", metavar="ADDR")
    c.add_argument("--scope", help="only the entry of this scope (global or a sender domain)")
    common(c)
    c = cmds.add_parser("list", help="the entries, in address order")
    c.add_argument("--limit", type=int, default=1000, help="at most N (default 1000)")
    common(c)
    c = cmds.add_parser("check", help="is ADDR suppressed? (exit 1 if it is)")
    c.add_argument("address", metavar="ADDR")
    c.add_argument("--sender-domain", help="for mail from this domain (default: global only)")
    common(c)
    c = cmds.add_parser("import", help="add every entry of a CSV file (- : stdin)")
    c.add_argument("file", metavar="FILE")
    common(c)
    c = cmds.add_parser("export", help="every entry as CSV (to FILE, default stdout)")
    c.add_argument("file", metavar="FILE", nargs="?")
    common(c)


def _who() -> str:
    try:
        return getpass.getuser()[:64]
    except (KeyError, OSError):
        return "cli"


class Backend(Protocol):
    def add(self, entries: list[Entry], *, summary: bool) -> int: ...
    def remove(self, key: str, scope: str | None) -> list[dict[str, Any]]: ...
    def page(
        self, after: tuple[str, str] | None, limit: int
    ) -> tuple[list[dict[str, Any]], tuple[str, str] | None]: ...
    def check(self, key: str, sender_domain: str | None) -> dict[str, Any]: ...
    def close(self) -> None: ...


def _json_entry(e: Entry) -> dict[str, Any]:
    d = e.to_dict()
    d["address"] = d.pop("key")
    return d


class ApiBackend:
    def __init__(self, client: AdminClient) -> None:
        self._c = client

    def add(self, entries: list[Entry], *, summary: bool) -> int:
        added = 0
        for chunk in _chunks([_json_entry(e) for e in entries]):
            body = {"entries": chunk, "by": _who(), "import": summary}
            added += int(self._c.call("POST", "/v1/suppressions", body)["added"])
        return added

    def remove(self, key: str, scope: str | None) -> list[dict[str, Any]]:
        body: dict[str, Any] = {"address": key, "by": _who()}
        if scope is not None:
            body["scope"] = scope
        got = self._c.call("DELETE", "/v1/suppressions", body)
        return list(got["removed"])

    def page(
        self, after: tuple[str, str] | None, limit: int
    ) -> tuple[list[dict[str, Any]], tuple[str, str] | None]:
        query: dict[str, Any] = {"limit": limit}
        if after is not None:
            query.update(after=after[0], after_scope=after[1])
        got = self._c.call("GET", "/v1/suppressions", query=query)
        nxt = got.get("next")
        return list(got["entries"]), (nxt["key"], nxt["scope"]) if nxt else None

    def check(self, key: str, sender_domain: str | None) -> dict[str, Any]:
        query = {"address": key, "sender_domain": sender_domain}
        return self._c.call("GET", "/v1/suppressions/check", query=query)

    def close(self) -> None:
        pass


def _chunks(items: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    chunk: list[dict[str, Any]] = []
    size = 0
    for item in items:
        n = len(json.dumps(item)) + 2
        if chunk and (size + n > CHUNK_BYTES or len(chunk) >= 1000):
            yield chunk
            chunk, size = [], 0
        chunk.append(item)
        size += n
    if chunk:
        yield chunk


class DirectBackend:
    """Volley is stopped: the file itself, under the spool's instance lock."""

    def __init__(self, settings: Settings, lock_fd: int) -> None:
        self._lock = lock_fd
        try:
            self._store = SqliteSuppressionStore(db_path(settings.spool_path))
        except StoreError:
            os.close(lock_fd)
            raise
        self._log = EventLog(settings.log_path, None)

    def add(self, entries: list[Entry], *, summary: bool) -> int:
        n = self._store.add(entries, replace=True)
        now, by = time.time(), _who()
        if summary:
            self._log.add("suppressions_imported", now, entries=n, by=by)
        else:
            for e in entries:
                fields = {"entry": e.key, "scope": e.scope, "source": e.source.value}
                self._log.add(
                    "suppression_added", now, **fields, reason=e.reason, expires=e.expires, by=by
                )
        self._log.flush()
        if len(entries) >= 10_000:
            self._store.checkpoint()
        return n

    def remove(self, key: str, scope: str | None) -> list[dict[str, Any]]:
        gone = self._store.remove(key, scope)
        now, by = time.time(), _who()
        for e in gone:
            self._log.add("suppression_removed", now, entry=e.key, scope=e.scope, by=by)
        self._log.flush()
        return [e.to_dict() for e in gone]

    def page(
        self, after: tuple[str, str] | None, limit: int
    ) -> tuple[list[dict[str, Any]], tuple[str, str] | None]:
        got = self._store.page(after, limit)
        nxt = (got[-1].key, got[-1].scope) if len(got) == limit else None
        return [e.to_dict() for e in got], nxt

    def check(self, key: str, sender_domain: str | None) -> dict[str, Any]:
        keys = [key] if "@" not in key else [key, key.rpartition("@")[2]]
        return check_answer(key, sender_domain, self._store.lookup(keys), time.time())

    def close(self) -> None:
        self._store.close()
        self._log.close()
        os.close(self._lock)


def _stopped_lock(spool: Path) -> int | None:
    """The spool's instance lock if no `volley run` holds it (we hold it until close),
    else None.  The pid file is not rewritten: it keeps naming the last owner."""
    spool.mkdir(parents=True, exist_ok=True)
    fd = os.open(spool / PID_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def backend(settings: Settings) -> Backend:
    fd = _stopped_lock(settings.spool_path)
    if fd is not None:
        return DirectBackend(settings, fd)
    try:
        return ApiBackend(AdminClient.from_settings(settings))
    except AdminError as e:
        raise Failed(
            f"volley run owns {settings.spool_path} and its admin API is needed: {e}"
        ) from None


def run(args: argparse.Namespace, settings: Settings) -> int:
    try:
        b = backend(settings)
    except (Failed, StoreError, OSError) as e:
        print(f"volley: suppress: {e}", file=sys.stderr)
        return 1
    try:
        return _run(args, b)
    except (BadEntry, ConfigError) as e:
        print(f"volley: suppress {args.action}: {e}", file=sys.stderr)
        return 2
    except (Failed, AdminError, StoreError, CsvError, OSError) as e:
        print(f"volley: suppress {args.action}: {e}", file=sys.stderr)
        return 1
    finally:
        b.close()


def _out(args: argparse.Namespace, payload: dict[str, Any], text: str) -> None:
    print(json.dumps(payload, indent=2, ensure_ascii=False) if args.json else text)


def _run(args: argparse.Namespace, b: Backend) -> int:
    act = args.action
    if act == "add":
        key = parse_target(args.address)
        scope = parse_scope(args.scope)
        now = time.time()
        expires = None if args.expires is None else now + parse_duration(args.expires, "--expires")
        entry = Entry(key, scope, args.reason or "", Source.MANUAL, now, expires)
        n = b.add([entry], summary=False)
        until = f" until {format_time(expires)}" if expires else ""
        _out(args, {"added": n, "entry": entry.to_dict()}, f"suppressed {key} ({scope}){until}")
        return 0
    if act == "remove":
        key = parse_target(args.address)
        gone = b.remove(key, None if args.scope is None else parse_scope(args.scope))
        scopes = ", ".join(e["scope"] for e in gone)
        text = f"removed {key} ({scopes})" if gone else f"{key} was not suppressed"
        _out(args, {"address": key, "removed": gone}, text)
        return 0
    if act == "list":
        if args.limit < 1:
            raise BadEntry("--limit: must be at least 1")
        rows, _ = b.page(None, args.limit)
        if args.json:
            print(json.dumps({"entries": rows}, indent=2, ensure_ascii=False))
        for e in [] if args.json else rows:
            until = f"  until {format_time(e['expires'])}" if e.get("expires") else ""
            why = f"  {e['reason']}" if e.get("reason") else ""
            print(f"{e['key']:<40} {e['scope']:<20} {e['source']:<11}{until}{why}")
        return 0
    if act == "check":
        key = parse_target(args.address)
        domain = parse_scope(args.sender_domain) if args.sender_domain else None
        got = b.check(key, None if domain == GLOBAL else domain)
        hit = got.get("entry")
        text = (
            f"{key} is suppressed ({hit['scope']}, {hit['source']}): {hit['reason']}"
            if hit
            else f"{key} is not suppressed"
        )
        _out(args, got, text)
        return 1 if got.get("suppressed") else 0
    if act == "import":
        text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text("utf-8")
        entries = read_entries(text, time.time())
        n = b.add(entries, summary=True)
        _out(args, {"entries": len(entries), "added": n}, f"imported {len(entries)} entries")
        return 0
    return _export(args, b)


def _export(args: argparse.Namespace, b: Backend) -> int:
    out = sys.stdout if not args.file else open(args.file, "w", newline="", encoding="utf-8")
    try:
        after: tuple[str, str] | None = None
        header = True
        total = 0
        while True:
            rows, after = b.page(after, PAGE)
            total += write_rows(out, (_entry(r) for r in rows), header=header)
            header = False
            if after is None:
                break
    finally:
        if out is not sys.stdout:
            out.close()
    if args.file:
        print(f"exported {total} entries to {args.file}", file=sys.stderr)
    return 0


def _entry(d: dict[str, Any]) -> Entry:
    return Entry(d["key"], d["scope"], d["reason"], Source(d["source"]), d["created"], d["expires"])
