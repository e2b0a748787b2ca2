"""A worker's side of the suppression list's writes: requests to the supervisor.

Responsible for: sending what a worker learns to the one writer (engine.suppress.service)
over the control channel - `add` (complaints, mailto: unsubscribes: a future that
completes when the supervisor has committed them, so the caller removes its report file
only then) and `event` (delivery results for the rules, buffered and sent with the
worker's metrics flush, every 250 ms: one message and one commit per flush, not one per
recipient) - and matching the supervisor's answers to their requests.
Not responsible for: deciding what to add (engine.suppress.feed, the feedback
processor) or writing anything itself.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Sequence
from typing import Any

from engine.suppress.model import Entry

__all__ = ["SuppressClient", "SuppressRefused"]

MAX_EVENTS = 5000  # per message; a worker reports ~1 000 results a second at most


class SuppressRefused(Exception):
    """The supervisor could not store the entries (its error text)."""


class SuppressClient:
    def __init__(self, send: Callable[..., None]) -> None:
        self._send = send
        self._req = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[None]] = {}
        self._events: list[list[Any]] = []

    def add(self, entries: Sequence[Entry]) -> asyncio.Future[None]:
        req = next(self._req)
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting[req] = fut
        self._send("suppress", req, [e.to_row() for e in entries])
        return fut

    def answered(self, req: int, error: str | None) -> None:
        fut = self._waiting.pop(req, None)
        if fut is None or fut.done():
            return
        if error:
            fut.set_exception(SuppressRefused(error))
        else:
            fut.set_result(None)

    def event(
        self,
        category: str | None,
        recipient: str,
        sender_domain: str | None,
        permanent: bool,
        message: str,
        text: str,
        now: float,
    ) -> None:
        """One delivery result (engine.suppress.service.Event's fields), sent at `flush`."""
        self._events.append(
            [category, recipient, sender_domain, permanent, message, text[:500], now]
        )
        if len(self._events) >= MAX_EVENTS:
            self.flush()

    def flush(self) -> None:
        if self._events:
            self._send("suppress_events", self._events)
            self._events = []

    def close(self) -> None:
        """The channel is gone: nobody will answer."""
        for fut in self._waiting.values():
            if not fut.done():
                fut.set_exception(SuppressRefused("the supervisor is gone"))
        self._waiting.clear()
