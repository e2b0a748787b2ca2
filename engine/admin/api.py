"""The admin API's routes: method + path + JSON body -> one service call -> status + JSON.

Responsible for: the URL space (below), turning a request into validated arguments
(engine.admin.requests) and every failure into a status with `{"error": "..."}`.
Not responsible for: authentication or HTTP framing (engine.admin.server, which checks the
bearer token before anything here runs) or doing the work (engine.admin.service).

  GET  /v1/suspensions                     the operator suspensions in effect
  POST /v1/suspend   {domain, duration?, reason?, by?}
  POST /v1/resume    {domain, by?}
  POST /v1/flush     {domain?, by?}        deferred mail (all, or one destination's) now
  POST /v1/bounce    {domain|id|sender|all, reason?, by?}   remove with a DSN
  POST /v1/delete    {domain|id|sender|all, reason?, by?}   remove without one
  GET  /v1/queue?domain=D&limit=N          queued entries, oldest first
  GET  /v1/messages/<id>                   one message: entries, headers, state, history

Other packages add routes of their own (`extra`: engine.suppress.api's /v1/suppressions).

Named after the CLI commands (`volley suspend` is POST /v1/suspend) so that a tool can
drive either.  `duration` is seconds or "1h"-style text; `by` names who asked (the
CLI sends the login name) and goes into the log.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from engine.admin.requests import (
    BadRequest,
    parse_domain,
    parse_duration_value,
    parse_entry_id,
    parse_limit,
    parse_reason,
    parse_selector,
)
from engine.admin.service import AdminService, Unavailable
from engine.admin.suspensions import StoreError

__all__ = ["Api", "Response"]

Response = tuple[int, dict[str, Any]]
Body = Mapping[str, Any]
Query = Mapping[str, str]

MESSAGES = "/v1/messages/"


Handler = Callable[[Query, Body], Awaitable[Response]]


class Api:
    def __init__(
        self, service: AdminService, extra: Mapping[str, Mapping[str, Handler]] | None = None
    ) -> None:
        self._s = service
        self._routes: dict[str, dict[str, Handler]] = {
            "/v1/suspensions": {"GET": self._suspensions},
            "/v1/suspend": {"POST": self._suspend},
            "/v1/resume": {"POST": self._resume},
            "/v1/flush": {"POST": self._flush},
            "/v1/bounce": {"POST": self._bounce},
            "/v1/delete": {"POST": self._delete},
            "/v1/queue": {"GET": self._queue},
        }
        for path, methods in (extra or {}).items():
            self._routes[path] = dict(methods)

    async def handle(self, method: str, path: str, query: Query, body: Body) -> Response:
        """Answer one authenticated request; never raises for a bad request."""
        try:
            if path.startswith(MESSAGES) and path.count("/") == 3:
                if method != "GET":
                    return 405, {"error": f"{method} not allowed on {path}; use GET"}
                return await self._show(path[len(MESSAGES) :])
            methods = self._routes.get(path.rstrip("/") or "/")
            if methods is None:
                return 404, {"error": f"no such endpoint: {path}"}
            handler = methods.get(method)
            if handler is None:
                allowed = ", ".join(sorted(methods))
                return 405, {"error": f"{method} not allowed on {path}; use {allowed}"}
            return await handler(query, body)
        except BadRequest as e:
            return 400, {"error": str(e)}
        except Unavailable as e:
            return 503, {"error": str(e)}
        except StoreError as e:
            return 500, {"error": f"suspension store: {e}"}

    async def _suspensions(self, query: Query, body: Body) -> Response:
        return 200, self._s.suspensions()

    async def _suspend(self, query: Query, body: Body) -> Response:
        domain = parse_domain(body.get("domain"))
        duration = parse_duration_value(body.get("duration"))
        reason = parse_reason(body.get("reason"))
        return 200, self._s.suspend(domain, duration, reason, _by(body))

    async def _resume(self, query: Query, body: Body) -> Response:
        return 200, self._s.resume(parse_domain(body.get("domain")), _by(body))

    async def _flush(self, query: Query, body: Body) -> Response:
        raw = body.get("domain")
        domain = None if raw is None else parse_domain(raw)
        return 200, await self._s.flush(domain, _by(body))

    async def _bounce(self, query: Query, body: Body) -> Response:
        return await self._remove("bounce", body)

    async def _delete(self, query: Query, body: Body) -> Response:
        return await self._remove("delete", body)

    async def _remove(self, action: str, body: Body) -> Response:
        selector = parse_selector(body)
        reason = parse_reason(body.get("reason"))
        return 200, await self._s.remove(action, selector, reason, _by(body))

    async def _queue(self, query: Query, body: Body) -> Response:
        raw = query.get("domain")
        domain = None if not raw else parse_domain(raw)
        return 200, await self._s.list_entries(domain, parse_limit(query.get("limit")))

    async def _show(self, raw_id: str) -> Response:
        entry_id = parse_entry_id(raw_id)
        got = await self._s.show(entry_id)
        if got is None:
            return 404, {"error": f"no message {entry_id} in the queue or the delivery log"}
        return 200, got


def _by(body: Body) -> str:
    """Who asked, as the client says (for the log; every token holder is trusted)."""
    by = body.get("by")
    return parse_reason(by, "api")[:64] if isinstance(by, str) else "api"
