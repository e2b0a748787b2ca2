"""Queue control as the supervisor runs it: store, service, token and HTTP server together.

Responsible for: opening everything in order at start — the suspension store
(`<spool>/state.db`), the supervisor's delivery-log writer, the token file (created 0600
when missing), the HTTP server bound to `admin.listen` — and turning any failure into one
line (`AdminStartError`: the supervisor prints it and exits 2 before a worker starts);
printing the notes an operator should see (token created, token readable by others, an
API bound beyond loopback); closing it all at the end.
Not responsible for: what the API does (engine.admin.service, engine.admin.api).

`admin.listen = ""` turns the HTTP API off; suspensions still persist and apply (the
store is the supervisor's either way), so a suspension never silently ends because the
API was switched off.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Mapping

from engine.admin.api import Api, Handler
from engine.admin.server import AdminServer, is_loopback, split_listen
from engine.admin.service import ACTION_TIMEOUT, AdminService
from engine.admin.suspensions import SqliteSuspensionStore, StoreError
from engine.admin.token import TokenError, ensure_token, loose_permissions
from engine.config import Settings
from engine.telemetry.eventlog import EventLog
from engine.telemetry.export import Exporter

__all__ = ["Admin", "AdminStartError"]

STATE_DB = "state.db"
# The HTTP thread waits this long for the loop's answer: the service's own timeouts
# (ACTION_TIMEOUT at most) plus room to build the reply.
SERVER_TIMEOUT = ACTION_TIMEOUT + 10.0


class AdminStartError(Exception):
    """Queue control cannot start; the message is one line naming the setting or file."""


class Admin:
    def __init__(self, service: AdminService, server: AdminServer | None) -> None:
        self.service = service
        self.server = server

    @classmethod
    def open(
        cls,
        settings: Settings,
        exporter: Exporter,
        *,
        send: Callable[..., None],
        live: Callable[[], list[int]],
        routes: Mapping[str, Mapping[str, Handler]] | None = None,
    ) -> Admin:
        """Open and start everything (on the event loop); raises AdminStartError.
        `routes`: other packages' API routes (engine.admin.api.Api's `extra`)."""
        try:
            store = SqliteSuspensionStore(settings.spool_path / STATE_DB)
        except StoreError as e:
            raise AdminStartError(f"suspension store {e}") from None
        log = EventLog(settings.log_path, None)
        service = AdminService(
            store=store,
            log=log,
            log_path=settings.log_path,
            exporter=exporter,
            send=send,
            live=live,
        )
        server: AdminServer | None = None
        try:
            if settings.admin_listen:
                server = _server(settings, service, routes)
            service.start()
        except BaseException as e:
            if server is not None:
                server.close()
            store.close()
            log.close()
            if isinstance(e, StoreError):
                raise AdminStartError(f"suspension store {e}") from None
            raise
        if server is not None:
            server.serve()
        return cls(service, server)

    async def close(self) -> None:
        if self.server is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.server.close)
        await self.service.close()


def _server(
    settings: Settings,
    service: AdminService,
    routes: Mapping[str, Mapping[str, Handler]] | None = None,
) -> AdminServer:
    path = settings.admin_token_path
    try:
        token, created = ensure_token(path)
        loose = loose_permissions(path)
    except (OSError, TokenError) as e:
        why = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise AdminStartError(f"admin.token_file {path}: {why}") from None
    try:
        server = AdminServer(
            settings.admin_listen,
            token,
            Api(service, routes).handle,
            asyncio.get_running_loop(),
            timeout=SERVER_TIMEOUT,
        )
    except (OSError, OverflowError) as e:
        why = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise AdminStartError(f"admin.listen {settings.admin_listen}: {why}") from None
    # Notes only once the bind worked: a failed start says one thing, the reason.
    if created:
        _note(f"created the admin API token {path} (mode 0600)")
    if loose:
        _note(f"warning: {path} can be read or written by other users; chmod 600 it")
    if not is_loopback(split_listen(settings.admin_listen)[0]):
        _note(
            f"warning: the admin API listens on {settings.admin_listen}, beyond loopback, "
            "without TLS: put a TLS-terminating proxy in front (README)"
        )
    return server


def _note(text: str) -> None:
    print(f"volley: {text}", file=sys.stderr, flush=True)
