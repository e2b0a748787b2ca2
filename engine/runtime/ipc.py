"""The supervisor <-> worker control channel: msgpack messages over a socketpair.

Responsible for: framing (msgpack's streaming Unpacker delimits messages by itself, so no
length prefix is needed on a live stream) and delivering each decoded message to a
callback on the event loop.  Messages are short lists whose first item names the kind:

  worker -> supervisor   ["acquire", req, domain, limit]   ask for a connection slot
                         ["release", domain]               give one back
                         ["cancel", req, domain]           withdraw a waiting request
                         ["metrics", counters, gauges]     deltas since the last flush
                         ["reply", req, result]            answer to directive `req` (a dict;
                                                           {"error": text} if it failed)
                         ["suppress", req, [entry, ...]]   add to the suppression list; req 0:
                                                           no answer (engine.suppress.service)
                         ["suppress_events", [event, ...]] delivery results for its rules
                         ["smtpd_open", req, client, limit]  may one more listener session
                                                           of `client` start (engine.smtpd.clients)
                         ["smtpd_close", client]           a session `smtpd_open` let in ended
  supervisor -> worker   ["config", settings_dict, info]   first message, always; info has
                                                           the listener's socket fds ("smtpd")
                         ["suspensions", [[domain, until, reason], ...]]
                                                           the whole set of operator suspensions
                                                           in effect (right after config, and
                                                           after every change)
                         ["directive", req, action, args]  a queue action, answered by one reply:
                                                           flush {domain|None}, bounce / delete
                                                           {selector, reason, by}, list {domain,
                                                           limit}, show {id}
                                                           (engine.runtime.control)
                         ["grant", req]                    a slot for request `req`
                         ["smtpd_admit", req, ok]          the answer to `smtpd_open`
                         ["suppressed", req, error|None]   the answer to "suppress" (committed)
                         ["contend", domain]               someone waits for `domain`: close idle
                         ["drain"]                         stop taking work, finish, exit 0

Not responsible for: what the messages mean (supervisor.py, worker.py).  Nothing here is
durable: losing the channel means the process at the other end died.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any, cast

import msgpack

Message = list[Any]


class Channel(asyncio.Protocol):
    def __init__(self, on_message: Callable[[Message], None], on_close: Callable[[], None]) -> None:
        self._on_message = on_message
        self._on_close = on_close
        self._unpacker = msgpack.Unpacker(raw=False)
        self._packer = msgpack.Packer(use_bin_type=True)
        self._transport: asyncio.Transport | None = None
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio's ABCs, so cast rather than check.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._unpacker.feed(data)
        for msg in self._unpacker:
            self._on_message(msg)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        if not self.closed.done():
            self.closed.set_result(None)
        self._on_close()

    def send(self, *msg: Any) -> None:
        """Queue one message; silently dropped if the other end is gone (its death is
        reported by connection_lost / the process exit, not by a failed write)."""
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(self._packer.pack(list(msg)))

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


async def open_channel(
    sock: socket.socket, on_message: Callable[[Message], None], on_close: Callable[[], None]
) -> Channel:
    loop = asyncio.get_running_loop()
    _, proto = await loop.connect_accepted_socket(lambda: Channel(on_message, on_close), sock)
    return proto
