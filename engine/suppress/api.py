"""The suppression list's admin API routes (served by engine.admin beside queue control).

Responsible for: turning requests into validated calls of the supervisor's
SuppressionService and answers into JSON:

  GET    /v1/suppressions?after=KEY&after_scope=SCOPE&limit=N
             entries in (key, scope) order; `next` is the cursor of the following page
  POST   /v1/suppressions  {entries: [{address, scope?, reason?, source?, created?,
             expires?}], import?, by?}   add (an operator's: replaces what is stored for
             the same address and scope); `expires` epoch seconds or null; `import`: one
             summary record in the log instead of one per entry
  DELETE /v1/suppressions  {address, scope?, by?}   remove (every scope unless given)
  GET    /v1/suppressions/check?address=A&sender_domain=D
             whether mail from D (default: any, i.e. global entries only) to A is
             suppressed, by which entry, and every entry stored for A and its domain

`volley suppress` (engine.suppress.commands) sends exactly these while Volley runs.
Not responsible for: authentication, HTTP or the body size limit (engine.admin.server:
64 KB a request, so the CLI imports in chunks).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from engine.admin.requests import BadRequest, parse_limit, parse_reason
from engine.suppress.model import (
    GLOBAL,
    BadEntry,
    Entry,
    Source,
    clean_reason,
    parse_scope,
    parse_target,
    scopes_of,
    winner,
)
from engine.suppress.service import SuppressionService
from engine.suppress.store import StoreError

__all__ = ["SuppressApi", "check_answer", "entry_from_json"]

Response = tuple[int, dict[str, Any]]
Handler = Callable[[Mapping[str, str], Mapping[str, Any]], Awaitable[Response]]
MAX_ENTRIES = 5000  # per request


def _by(body: Mapping[str, Any]) -> str:
    by = body.get("by")
    return parse_reason(by, "api")[:64] if isinstance(by, str) else "api"


def _time(value: Any, what: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise BadRequest(f"{what}: expected epoch seconds or null")
    return float(value)


def entry_from_json(item: Any, now: float) -> Entry:
    """One entry of a POST body (raises BadRequest)."""
    if not isinstance(item, Mapping):
        raise BadRequest("entries: expected a list of objects")
    try:
        address = item.get("address")
        if not isinstance(address, str):
            raise BadEntry("address: expected an address or a domain")
        scope = item.get("scope")
        if scope is not None and not isinstance(scope, str):
            raise BadEntry("scope: expected global or a sender domain")
        source = item.get("source") or Source.MANUAL.value
        try:
            src = Source(source)
        except ValueError:
            raise BadEntry(f"source: {source!r} is not a source") from None
        created = _time(item.get("created"), "created")
        return Entry(
            parse_target(address),
            parse_scope(scope),
            clean_reason(item.get("reason") if isinstance(item.get("reason"), str) else ""),
            src,
            now if created is None else created,
            _time(item.get("expires"), "expires"),
        )
    except BadEntry as e:
        raise BadRequest(str(e)) from None


class SuppressApi:
    def __init__(self, service: SuppressionService, clock: Callable[[], float] = time.time) -> None:
        self._s = service
        self._clock = clock

    def routes(self) -> dict[str, dict[str, Handler]]:
        return {
            "/v1/suppressions": {"GET": self._list, "POST": self._add, "DELETE": self._remove},
            "/v1/suppressions/check": {"GET": self._check},
        }

    async def _guard(self, call: Awaitable[Response]) -> Response:
        try:
            return await call
        except BadEntry as e:
            return 400, {"error": str(e)}
        except StoreError as e:
            return 500, {"error": f"suppression list: {e}"}

    async def _list(self, query: Mapping[str, str], body: Mapping[str, Any]) -> Response:
        return await self._guard(self._list_page(query))

    async def _list_page(self, query: Mapping[str, str]) -> Response:
        limit = parse_limit(query.get("limit"))
        after = query.get("after")
        cursor = (after, query.get("after_scope") or "") if after else None
        got = await self._s.page(cursor, limit)
        nxt = {"key": got[-1].key, "scope": got[-1].scope} if len(got) == limit else None
        return 200, {"entries": [e.to_dict() for e in got], "next": nxt}

    async def _add(self, query: Mapping[str, str], body: Mapping[str, Any]) -> Response:
        items = body.get("entries")
        if not isinstance(items, list) or not items:
            raise BadRequest("entries: expected a non-empty list")
        if len(items) > MAX_ENTRIES:
            raise BadRequest(f"entries: at most {MAX_ENTRIES} per request")
        now = self._clock()
        entries = [entry_from_json(item, now) for item in items]
        try:
            added = await self._s.add(
                entries, replace=True, by=_by(body), summary=body.get("import") is True
            )
        except StoreError as e:
            return 500, {"error": f"suppression list: {e}"}
        return 200, {"added": added, "entries": len(entries)}

    async def _remove(self, query: Mapping[str, str], body: Mapping[str, Any]) -> Response:
        address = body.get("address")
        if not isinstance(address, str):
            raise BadRequest("address: expected an address or a domain")
        scope = body.get("scope")
        try:
            key = parse_target(address)
            sc = None if scope is None else parse_scope(str(scope))
        except BadEntry as e:
            raise BadRequest(str(e)) from None
        try:
            gone = await self._s.remove(key, sc, _by(body))
        except StoreError as e:
            return 500, {"error": f"suppression list: {e}"}
        return 200, {"address": key, "removed": [e.to_dict() for e in gone]}

    async def _check(self, query: Mapping[str, str], body: Mapping[str, Any]) -> Response:
        try:
            key = parse_target(query.get("address") or "")
            raw = query.get("sender_domain")
            domain = parse_scope(raw) if raw else None
            domain = None if domain == GLOBAL else domain
        except BadEntry as e:
            raise BadRequest(str(e)) from None
        keys = [key] if "@" not in key else [key, key.rpartition("@")[2]]
        try:
            stored = await self._s.lookup(keys)
        except StoreError as e:
            return 500, {"error": f"suppression list: {e}"}
        return 200, check_answer(key, domain, stored, self._clock())


def check_answer(
    key: str, sender_domain: str | None, stored: list[Entry], now: float
) -> dict[str, Any]:
    """The answer of a check (also what `volley suppress check` prints while stopped)."""
    hit = winner(stored, scopes_of(sender_domain), now)
    return {
        "address": key,
        "sender_domain": sender_domain,
        "suppressed": hit is not None,
        "entry": None if hit is None else hit.to_dict(),
        "entries": [e.to_dict() for e in sorted(stored, key=lambda e: (e.key, e.scope))],
    }
