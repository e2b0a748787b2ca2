"""The suppression list and the unsubscribe endpoint as the supervisor runs them.

Responsible for: opening, in order, at start - the list's writer (engine.suppress.service,
creating `<spool>/suppression.db` before any worker opens it read-only), and with
`[unsubscribe]` the secret file (created 0600 with a random key when missing) and the
HTTP endpoint (engine.unsubscribe.server) - turning any failure into one line naming the
setting or file (`SuppressStartError`: the supervisor prints it and exits 2 before a
worker starts); the notes an operator should see (key created, endpoint beyond loopback
without TLS); routing workers' messages; closing it all at the end.
Not responsible for: what any of it does (engine.suppress.service, engine.unsubscribe).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from engine.admin.server import is_loopback, split_listen
from engine.config import Settings
from engine.suppress.api import Handler, SuppressApi
from engine.suppress.service import SuppressionService
from engine.suppress.store import StoreError
from engine.unsubscribe.server import UnsubscribeServer, tls_context
from engine.unsubscribe.token import ensure_secret, load_keyring

__all__ = ["SuppressStartError", "Suppression"]

WORKER_MESSAGES = frozenset({"suppress", "suppress_events"})


class SuppressStartError(Exception):
    """The list or the endpoint cannot start; one line naming the setting or file."""


class Suppression:
    def __init__(self, service: SuppressionService, server: UnsubscribeServer | None) -> None:
        self.service = service
        self.server = server

    @classmethod
    async def open(cls, settings: Settings, count: Callable[..., None]) -> Suppression:
        """Call on the event loop, before workers start; raises SuppressStartError."""
        try:
            service = await SuppressionService.open(settings, count)
        except StoreError as e:
            raise SuppressStartError(f"suppression list {e}") from None
        try:
            server = await _endpoint(settings, service, count)
        except BaseException:
            await service.close()
            raise
        return cls(service, server)

    def routes(self) -> dict[str, dict[str, Handler]]:
        """The admin API's /v1/suppressions routes."""
        return SuppressApi(self.service).routes()

    def on_message(self, msg: list[Any], reply: Callable[..., None]) -> bool:
        """A worker's message, if it is one of ours (True); `reply(*msg)` answers it."""
        if msg[0] not in WORKER_MESSAGES:
            return False
        self.service.on_message(msg, reply)
        return True

    def reconfigure(self, settings: Settings) -> None:
        self.service.reconfigure(settings)
        self.service.reopen_log()

    async def close(self) -> None:
        if self.server is not None:
            await self.server.close()
        await self.service.close()


async def _endpoint(
    settings: Settings, service: SuppressionService, count: Callable[..., None]
) -> UnsubscribeServer | None:
    u = settings.unsubscribe
    if u is None:
        return None
    path = settings.unsubscribe_secret_path
    try:
        created = ensure_secret(path)
        ring = load_keyring(path)
    except OSError as e:
        raise SuppressStartError(f"unsubscribe.secret_file {path}: {e.strerror or e}") from None
    except ValueError as e:
        raise SuppressStartError(f"unsubscribe.secret_file {path}: {e}") from None
    server = UnsubscribeServer(
        u, ring, service.unsubscribe, lambda result: count("volley_unsubscribe_requests", result)
    )
    if u.tls_cert is not None and u.tls_key is not None:
        try:
            tls_context(str(u.tls_cert), str(u.tls_key))
        except OSError as e:  # ssl.SSLError is an OSError
            why = e.strerror or str(e)
            raise SuppressStartError(
                f"unsubscribe.tls_cert: cannot load {u.tls_cert} with {u.tls_key}: {why}"
            ) from None
    try:
        await server.start()
    except OSError as e:
        raise SuppressStartError(f"unsubscribe.listen {u.listen}: {e.strerror or e}") from None
    if created:
        _note(f"created the unsubscribe key {path} (mode 0600)")
    if not is_loopback(split_listen(u.listen)[0]) and u.tls_cert is None:
        _note(
            f"warning: unsubscribe.listen {u.listen} is beyond loopback without TLS: links "
            "are https (RFC 8058); set unsubscribe.tls_cert or put a TLS proxy in front (README)"
        )
    return server


def _note(text: str) -> None:
    print(f"volley: {text}", file=sys.stderr, flush=True)
