"""The listener's sockets: bound once by the supervisor, one per worker and address.

Responsible for: binding every `smtpd.listen` and `smtpd.implicit_tls_listen` address
`workers` times with SO_REUSEPORT (the kernel then spreads incoming connections over the
workers' sockets, so no process hands a connection or a message to another), and saying
which of them worker k serves.  The supervisor keeps every socket open for its whole life
and hands worker k its own on each start: a worker that is restarted finds the
connections that arrived meanwhile waiting in its socket's backlog, and a port that
cannot be bound (in use, no permission) is one error line at start, before any worker
runs.  Port 0 asks the kernel for a free port: the first socket's port is used for the
others.
Not responsible for: serving (engine.smtpd.server in each worker), or TLS (the same
sockets carry implicit TLS once the worker wraps them).

"[::]:25" is IPv6 only (IPV6_V6ONLY): list "0.0.0.0:25" as well for IPv4, so that the
two never fight over the port.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field

from engine.config import SmtpdSettings, parse_address

__all__ = ["BACKLOG", "ListenError", "Listening", "bind_all"]

# Connections the kernel queues per worker socket before accept: Postfix's
# smtpd listen backlog is 100 (inet), Linux's somaxconn default 4096 caps it anyway.
BACKLOG = 1024


class ListenError(Exception):
    """An address cannot be bound; the message names the setting and the address."""


@dataclass(slots=True)
class Listening:
    """One configured address, bound once per worker."""

    setting: str  # "smtpd.listen" or "smtpd.implicit_tls_listen"
    host: str
    port: int
    implicit_tls: bool
    sockets: list[socket.socket] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def bind_all(settings: SmtpdSettings, workers: int) -> list[Listening]:
    """Bind every address `workers` times; raises ListenError (closing what it bound)."""
    out: list[Listening] = []
    pairs = [("smtpd.listen", a, False) for a in settings.listen]
    pairs += [("smtpd.implicit_tls_listen", a, True) for a in settings.implicit_tls_listen]
    try:
        for setting, text, implicit in pairs:
            host, port = parse_address(text, names=frozenset({"localhost"}), min_port=0)
            host = "127.0.0.1" if host == "localhost" else host
            listening = Listening(setting, host, port, implicit)
            out.append(listening)
            for _ in range(workers):
                try:
                    listening.sockets.append(_bind(host, listening.port))
                except OSError as e:
                    raise ListenError(f"{setting} {text}: {e.strerror or e}") from None
                listening.port = listening.sockets[0].getsockname()[1]
    except BaseException:
        close_all(out)
        raise
    return out


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
    except BaseException:
        sock.close()
        raise
    return sock


def for_worker(bound: list[Listening], k: int) -> list[tuple[socket.socket, bool]]:
    """Worker k's sockets, with whether each is implicit TLS."""
    return [(b.sockets[k], b.implicit_tls) for b in bound]


def close_all(bound: list[Listening]) -> None:
    for b in bound:
        for sock in b.sockets:
            sock.close()
        b.sockets.clear()
