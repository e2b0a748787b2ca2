"""An authoritative DNS server for tests: the "mini internet" name service.

Responsible for: answering UDP and TCP queries on one loopback port from an in-memory zone
that tests edit while it runs (MX, A, AAAA, CNAME, null MX), plus scripted trouble
(SERVFAIL, never answering), truncation of large UDP answers, and counting the queries it
received so cache tests can prove that no packet was sent.
Not responsible for: recursion, zone files, DNSSEC, EDNS, wildcards, or any real name.
Only names under `TEST_TLDS` exist here; any other name is REFUSED, so a resolver pointed at
this server can never be tricked into resolving the outside world.

Invariants:
  * Names are case-insensitive and stored without the trailing dot.
  * A name that is not in the zone (and is not an ancestor of a zone name, RFC 8020) is
    NXDOMAIN with the TLD's SOA in the authority section (RFC 2308 negative caching); a name
    that exists but lacks the asked type is NOERROR/NODATA with the same SOA.
  * UDP answers longer than 512 bytes (RFC 1035 §4.2.1) go out as header + question with
    TC=1, so the client retries over TCP on the same port.

Why the socket loop is hand-written (about 150 lines) instead of `dnslib.server.DNSServer`:
  1. its UDP truncation calls `DNSRecord.truncate()`, which drops the question section, and
     c-ares 1.34 then rejects the reply as ARES_EBADRESP (dependency-facts §2) instead of
     retrying over TCP;
  2. its TCP handler answers one query per connection, while c-ares reuses the connection;
  3. its UDP server sets SO_REUSEADDR, which on Linux lets a second UDP socket bind the same
     port, so "find a port free for both UDP and TCP" could silently share a port;
  4. "never answer" (blackhole) is not expressible: its resolver must return a reply.
dnslib is still used for all packet parsing and building.

See also: engine/net/dns.py (the client side), tests/unit/support/test_dns_server.py.
"""

from __future__ import annotations

import collections
import contextlib
import selectors
import socket
import struct
import threading
from dataclasses import dataclass, field
from types import TracebackType

from dnslib import (  # type: ignore[import-untyped]  # dnslib ships no type information
    AAAA,
    CNAME,
    MX,
    QTYPE,
    RCODE,
    RR,
    SOA,
    TXT,
    A,
    DNSError,
    DNSRecord,
)

__all__ = ["TEST_TLDS", "DnsServer"]

# RFC 2606 / RFC 6761 reserved names: none of them can ever be a real delegated domain.
TEST_TLDS: tuple[str, ...] = ("test", "example", "invalid")

_UDP_MAX = 512  # RFC 1035 §4.2.1; we ignore the client's EDNS size so truncation is testable
_CNAME_CHAIN_MAX = 8  # a loop in a test zone must not hang the server thread
_TCP_IO_TIMEOUT = 2.0  # seconds a TCP send may block before we drop the connection
_PORT_ATTEMPTS = 50  # random ports tried before giving up on one free for UDP and TCP


@dataclass(slots=True)
class _Node:
    """Everything stored under one owner name."""

    rrsets: dict[str, list[RR]] = field(default_factory=dict)  # qtype name -> records
    servfail: bool = False
    blackhole: bool = False


@dataclass(slots=True)
class _Conn:
    sock: socket.socket
    buf: bytearray = field(default_factory=bytearray)


def _norm(name: str) -> str:
    return name.strip().rstrip(".").lower()


def _tld_of(name: str) -> str | None:
    tld = name.rsplit(".", 1)[-1]
    return tld if tld in TEST_TLDS else None


class DnsServer:
    """A threaded authoritative server for the test TLDs; UDP and TCP on one port.

    Zone edits are thread-safe and take effect for the next query. `add_*` replace the
    RRset of that type at the name and clear any `servfail`/`blackhole` mode set on it.

    Example:
        with DnsServer() as dns:
            dns.add_mx("good.test", [(10, "mx1.good.test")])
            dns.add_a("mx1.good.test", ["127.0.0.1"])
            resolver = aiodns.DNSResolver(nameservers=[dns.address])
    """

    def __init__(
        self, host: str = "127.0.0.1", port: int | None = None, *, soa_ttl: int = 0
    ) -> None:
        """Args:
        host: loopback address to bind (IPv4 or IPv6 literal).
        port: fixed port, or None to pick one that is free for both UDP and TCP.
        soa_ttl: TTL and MINIMUM of the SOA sent with negative answers. 0 by default so
            resolvers (c-ares caches NXDOMAIN, dependency-facts §2) see zone edits at once.
        """
        self.host = host
        self._want_port = port
        self._soa_ttl = soa_ttl
        self._lock = threading.Lock()
        self._zone: dict[str, _Node] = {}
        self._log: collections.Counter[tuple[str, str, str]] = collections.Counter()
        self._udp: socket.socket | None = None
        self._tcp: socket.socket | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None

    # -- lifecycle --------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("DnsServer is not started")
        return self._port

    @property
    def address(self) -> str:
        """ "127.0.0.1:PORT" (or "[::1]:PORT") for aiodns nameservers and Volley's config."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("DnsServer already started")
        self._udp, self._tcp = self._bind()
        self._port = self._udp.getsockname()[1]
        self._wake_r, self._wake_w = socket.socketpair()
        self._thread = threading.Thread(target=self._serve, name="test-dns", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        thread = self._thread
        if thread is None:
            return
        assert self._wake_w is not None
        self._wake_w.send(b"x")
        thread.join(timeout=5.0)
        if thread.is_alive():  # pragma: no cover - would mean the loop is wedged
            raise RuntimeError("DnsServer thread did not stop")
        for s in (self._udp, self._tcp, self._wake_r, self._wake_w):
            if s is not None:
                s.close()
        self._udp = self._tcp = self._wake_r = self._wake_w = None
        self._thread = None

    def __enter__(self) -> DnsServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _bind(self) -> tuple[socket.socket, socket.socket]:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        attempts = 1 if self._want_port is not None else _PORT_ATTEMPTS
        last: OSError | None = None
        for _ in range(attempts):
            tcp = socket.socket(family, socket.SOCK_STREAM)
            udp = socket.socket(family, socket.SOCK_DGRAM)
            try:
                # SO_REUSEADDR on TCP only: it lets a fixed port be reused past TIME_WAIT,
                # and unlike on UDP it does not let two live listeners share the port.
                tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                tcp.bind((self.host, self._want_port or 0))
                port = tcp.getsockname()[1]
                udp.bind((self.host, port))  # fails if that UDP port is taken: try another
                tcp.listen(16)
                tcp.setblocking(False)
                udp.setblocking(False)
                return udp, tcp
            except OSError as e:
                tcp.close()
                udp.close()
                last = e
        raise OSError(f"no port free for both UDP and TCP on {self.host}") from last

    # -- zone edits -------------------------------------------------------------------------

    def add_mx(self, domain: str, mx: list[tuple[int, str]], ttl: int = 300) -> None:
        """Set the MX RRset of `domain` to `mx` = [(preference, exchange), ...]."""
        self._set(
            domain, "MX", [RR(_norm(domain), QTYPE.MX, rdata=MX(x, p), ttl=ttl) for p, x in mx]
        )

    def add_a(self, name: str, addrs: list[str], ttl: int = 300) -> None:
        self._set(name, "A", [RR(_norm(name), QTYPE.A, rdata=A(a), ttl=ttl) for a in addrs])

    def add_aaaa(self, name: str, addrs: list[str], ttl: int = 300) -> None:
        self._set(
            name, "AAAA", [RR(_norm(name), QTYPE.AAAA, rdata=AAAA(a), ttl=ttl) for a in addrs]
        )

    def add_txt(self, name: str, strings: list[str], ttl: int = 300) -> None:
        """One TXT record of `strings` (each at most 255 bytes), e.g. a DKIM key record."""
        rdata = TXT([s.encode() for s in strings])
        self._set(name, "TXT", [RR(_norm(name), QTYPE.TXT, rdata=rdata, ttl=ttl)])

    def add_cname(self, name: str, target: str, ttl: int = 300) -> None:
        """Make `name` an alias; a CNAME excludes all other data at the name (RFC 1034 §3.6.2)."""
        key = self._check(name)
        rr = RR(key, QTYPE.CNAME, rdata=CNAME(_norm(target)), ttl=ttl)
        with self._lock:
            self._zone[key] = _Node(rrsets={"CNAME": [rr]})

    def null_mx(self, domain: str) -> None:
        """Publish "MX 0 ." (RFC 7505: this domain accepts no mail)."""
        self.add_mx(domain, [(0, ".")])

    def servfail(self, name: str) -> None:
        """Every query for `name`, of any type, is answered SERVFAIL."""
        with self._lock:
            node = self._zone.setdefault(self._check(name), _Node())
            node.servfail, node.blackhole = True, False

    def blackhole(self, name: str) -> None:
        """Queries for `name` are counted but never answered (the client times out)."""
        with self._lock:
            node = self._zone.setdefault(self._check(name), _Node())
            node.servfail, node.blackhole = False, True

    def remove(self, name: str) -> None:
        """Forget `name` entirely: it becomes NXDOMAIN (unless it is an ancestor of a name)."""
        with self._lock:
            self._zone.pop(self._check(name), None)

    def queries(
        self, name: str | None = None, qtype: str | None = None, *, transport: str | None = None
    ) -> int:
        """Count queries received, optionally only for `name`, `qtype` ("MX") and
        `transport` ("udp"/"tcp"). A truncated UDP answer retried over TCP counts twice."""
        want = (
            _norm(name) if name is not None else None,
            qtype.upper() if qtype is not None else None,
            transport,
        )
        with self._lock:
            return sum(
                n
                for key, n in self._log.items()
                if all(w is None or w == k for w, k in zip(want, key, strict=True))
            )

    def _check(self, name: str) -> str:
        key = _norm(name)
        if not key or _tld_of(key) is None:
            raise ValueError(f"{name!r} is not under a test TLD {TEST_TLDS}")
        return key

    def _set(self, name: str, qtype: str, rrs: list[RR]) -> None:
        key = self._check(name)
        with self._lock:
            node = self._zone.setdefault(key, _Node())
            node.rrsets.pop("CNAME", None)  # other data and a CNAME cannot coexist
            node.rrsets[qtype] = rrs
            node.servfail = node.blackhole = False

    # -- answering (pure over the zone, called with the lock held) ----------------------------

    def _soa(self, tld: str) -> RR:
        ttl = self._soa_ttl
        rdata = SOA(f"ns.{tld}", f"hostmaster.{tld}", (1, 3600, 600, 86400, ttl))
        return RR(tld, QTYPE.SOA, rdata=rdata, ttl=ttl)

    def _exists(self, name: str) -> bool:
        # RFC 8020: an empty non-terminal (a.test when only x.a.test has data) exists.
        if name in self._zone or name in TEST_TLDS:
            return True
        suffix = "." + name
        return any(k.endswith(suffix) for k in self._zone)

    def _answer(self, request: DNSRecord) -> DNSRecord | None:
        """Build the reply to `request`, or None to stay silent (blackhole)."""
        reply = request.reply()
        name, qtype = _norm(str(request.q.qname)), QTYPE[request.q.qtype]
        tld = _tld_of(name) if name else None
        if tld is None:
            reply.header.rcode = RCODE.REFUSED
            return reply
        for _ in range(_CNAME_CHAIN_MAX):
            node = self._zone.get(name)
            if node is not None and node.blackhole:
                return None
            if node is not None and node.servfail:
                reply.header.rcode = RCODE.SERVFAIL
                return reply
            if not self._exists(name):
                reply.header.rcode = RCODE.NXDOMAIN
                reply.add_auth(self._soa(tld))
                return reply
            if name == tld and qtype == "SOA":
                reply.add_answer(self._soa(tld))
                return reply
            rrsets = node.rrsets if node is not None else {}
            cname = rrsets.get("CNAME")
            if cname and qtype != "CNAME":
                reply.add_answer(*cname)
                name = _norm(str(cname[0].rdata.label))
                if _tld_of(name) is None:
                    return reply  # out-of-zone target: the client must chase it itself
                continue
            rrs = rrsets.get(qtype, [])
            if rrs:
                reply.add_answer(*rrs)
            else:
                reply.add_auth(self._soa(tld))  # NODATA
            return reply
        reply.header.rcode = RCODE.SERVFAIL  # CNAME loop
        return reply

    def _handle(self, data: bytes, transport: str) -> bytes | None:
        try:
            request = DNSRecord.parse(data)
        except DNSError:
            return None  # not DNS: drop it, as real servers do with garbage
        if not request.questions:
            return None
        key = (_norm(str(request.q.qname)), QTYPE[request.q.qtype], transport)
        with self._lock:
            self._log[key] += 1
            reply = self._answer(request)
        if reply is None:
            return None
        wire = reply.pack()
        if transport == "udp" and len(wire) > _UDP_MAX:
            short = request.reply()
            short.header.tc = 1
            short.header.rcode = reply.header.rcode
            wire = short.pack()  # header + question only; see the module docstring, point 1
        return bytes(wire)

    # -- socket loop (one thread; every socket is non-blocking) ------------------------------

    def _serve(self) -> None:
        assert self._udp is not None and self._tcp is not None and self._wake_r is not None
        conns: dict[int, _Conn] = {}
        with selectors.DefaultSelector() as sel:
            sel.register(self._udp, selectors.EVENT_READ, "udp")
            sel.register(self._tcp, selectors.EVENT_READ, "accept")
            sel.register(self._wake_r, selectors.EVENT_READ, "wake")
            try:
                while True:
                    for key, _ in sel.select():
                        if key.data == "wake":
                            return
                        if key.data == "udp":
                            self._serve_udp(self._udp)
                        elif key.data == "accept":
                            self._accept(sel, self._tcp, conns)
                        else:
                            self._serve_tcp(sel, conns, key.fd)
            finally:
                for c in conns.values():
                    c.sock.close()

    def _serve_udp(self, udp: socket.socket) -> None:
        with contextlib.suppress(BlockingIOError, InterruptedError):
            while True:
                data, peer = udp.recvfrom(65535)
                out = self._handle(data, "udp")
                if out is not None:
                    with contextlib.suppress(OSError):
                        udp.sendto(out, peer)

    def _accept(
        self, sel: selectors.BaseSelector, tcp: socket.socket, conns: dict[int, _Conn]
    ) -> None:
        try:
            sock, _ = tcp.accept()
        except (BlockingIOError, InterruptedError):
            return
        # A timeout (rather than non-blocking) keeps sendall() simple: replies are at most
        # a few KB, far below the loopback socket buffer, so it never waits in practice.
        sock.settimeout(_TCP_IO_TIMEOUT)
        conns[sock.fileno()] = _Conn(sock)
        sel.register(sock, selectors.EVENT_READ, "tcp")

    def _serve_tcp(self, sel: selectors.BaseSelector, conns: dict[int, _Conn], fd: int) -> None:
        conn = conns[fd]
        try:
            data = conn.sock.recv(65535)
            if not data:
                raise ConnectionResetError
            conn.buf += data
            # RFC 1035 §4.2.2: each message is prefixed by its 2-byte length.
            while len(conn.buf) >= 2:
                (size,) = struct.unpack("!H", conn.buf[:2])
                if len(conn.buf) < 2 + size:
                    break
                msg = bytes(conn.buf[2 : 2 + size])
                del conn.buf[: 2 + size]
                out = self._handle(msg, "tcp")
                if out is not None:
                    conn.sock.sendall(struct.pack("!H", len(out)) + out)
        except OSError:
            sel.unregister(conn.sock)
            del conns[fd]
            conn.sock.close()
