"""The mini internet: one DNS server plus SMTP receivers on distinct loopback addresses.

Responsible for: handing out 127.0.0.2-127.0.0.254 to MX hosts (each MX host gets its own
address, so per-host behaviour and connection counts are exact), publishing MX/A records
for test domains, starting a receiver per address, and building test messages.
Not responsible for: receiver behaviour (tests.support.receiver_scenarios and
receiver_smtp) or DNS wire details (tests.support.dns_server).  Nothing here can reach
beyond 127.0.0.0/8.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from tests.support.dns_server import DnsServer
from tests.support.net import free_port
from tests.support.receiver import Receiver
from tests.support.scripted import Script, ScriptedServer, standard

ADDRESSES = [f"127.0.0.{i}" for i in range(2, 255)]


class MiniInternet:
    def __init__(self) -> None:
        self.dns = DnsServer()
        self.port = free_port(ADDRESSES[:40])
        self.receivers: dict[str, Receiver] = {}
        self.scripted_servers: list[ScriptedServer] = []
        self._free = iter(ADDRESSES)
        self._seq = itertools.count(1)

    def start(self) -> MiniInternet:
        self.dns.start()
        return self

    def stop(self) -> None:
        for r in self.receivers.values():
            r.stop()
        for server in self.scripted_servers:
            server.stop()
        self.dns.stop()

    def address(self) -> str:
        ip = next(self._free)
        if not ip.startswith("127."):  # pragma: no cover - the list above guarantees it
            raise AssertionError("loopback only")
        return ip

    def receiver(self, ip: str | None = None, *, start: bool = True, **kwargs: Any) -> Receiver:
        """A receiver on a fresh (or the given) loopback address."""
        ip = ip or self.address()
        r = Receiver(ip, self.port, name=ip, **kwargs)
        if start:
            r.start()
        self.receivers[ip] = r
        return r

    def relay(self, name: str | None = None, **kwargs: Any) -> Receiver:
        """A smarthost: a receiver on a fresh address and a port of its own (Volley reaches
        it on the route's port, not on smtp.port); `name` gets an A record for it."""
        ip = self.address()
        r = Receiver(ip, free_port([ip]), name=name or ip, **kwargs)
        r.start()
        self.receivers[ip] = r
        if name is not None:
            self.dns.add_a(name, [ip])
        return r

    def domain(
        self, domain: str, *, mx: int = 1, start: bool = True, ttl: int = 300, **kwargs: Any
    ) -> list[Receiver]:
        """Publish `domain` with `mx` MX hosts (preferences 10, 20, ...), each on its own
        address with its own receiver; returns the receivers in preference order."""
        out = []
        records = []
        for i in range(mx):
            host = f"mx{i + 1}.{domain}"
            r = self.receiver(start=start, **kwargs)
            self.dns.add_a(host, [r.ip], ttl=ttl)
            records.append(((i + 1) * 10, host))
            out.append(r)
        self.dns.add_mx(domain, records, ttl=ttl)
        return out

    def scripted(self, script: Script = standard) -> ScriptedServer:
        """A scripted SMTP server (tests.support.scripted) on a fresh address."""
        server = ScriptedServer(self.address(), self.port, script).start()
        self.scripted_servers.append(server)
        return server

    def publish(self, domain: str, ips: Sequence[str], *, ttl: int = 300) -> None:
        """MX records for `domain`: one host per IP (preferences 10, 20, ...), in order."""
        records = []
        for i, ip in enumerate(ips):
            host = f"mx{i + 1}.{domain}"
            self.dns.add_a(host, [ip], ttl=ttl)
            records.append(((i + 1) * 10, host))
        self.dns.add_mx(domain, records, ttl=ttl)

    def __enter__(self) -> MiniInternet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextmanager
def mini_internet() -> Iterator[MiniInternet]:
    net = MiniInternet().start()
    try:
        yield net
    finally:
        net.stop()


def message(
    sender: str,
    to: Sequence[str],
    *,
    subject: str = "hello",
    body: str | None = None,
    cc: Sequence[str] = (),
    bcc: Sequence[str] = (),
    seq: int = 0,
) -> bytes:
    """A small, complete RFC 5322 message (Date, unique Message-ID), CRLF line endings."""
    lines = [f"From: {sender}", f"To: {', '.join(to)}"]
    if cc:
        lines.append(f"Cc: {', '.join(cc)}")
    if bcc:
        lines.append(f"Bcc: {', '.join(bcc)}")
    lines += [
        f"Subject: {subject}",
        "Date: Thu, 26 Nov 2026 12:00:00 +0000",  # complete: intake adds nothing
        f"Message-ID: <m{seq}.{abs(hash((sender, tuple(to), seq)))}@sender.test>",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        "",
        body if body is not None else f"Hello number {seq}.\r\n.leading dot line\r\nbye",
    ]
    return ("\r\n".join(lines) + "\r\n").encode()
