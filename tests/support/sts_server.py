"""A test MTA-STS policy host: HTTPS on one loopback address, policies by Host header.

Responsible for: `tls_domain` (a domain whose MX hosts serve STARTTLS with certificates
from a `LocalCA`), `PolicyServer`, a real HTTPS server (stdlib http.server in a thread,
TLS with a certificate from a `LocalCA` for `mta-sts.<domain>` of every domain it serves)
that answers GET /.well-known/mta-sts.txt with the policy published for the request's
Host, or a chosen status / content type; counting the requests; and `publish_sts`,
which puts the DNS side in place (the `_mta-sts` TXT record and the policy host's A
record) in the mini internet's DNS server.
Not responsible for: the SMTP side (tests.support.receiver), or anything off 127.0.0.0/8.
The port is free_port()'s, not 443: Volley reaches it through `dns.mta_sts_port`.
"""

from __future__ import annotations

import http.server
import threading
from dataclasses import dataclass
from typing import Any

from tests.support.dns_server import DnsServer
from tests.support.internet import MiniInternet
from tests.support.net import free_port
from tests.support.receiver import Receiver
from tests.support.tls_certs import LocalCA

__all__ = ["PolicyServer", "Published", "policy_text", "publish_sts", "tls_domain"]

POLICY_PATH = "/.well-known/mta-sts.txt"


@dataclass
class Published:
    body: str
    status: int = 200
    content_type: str = "text/plain"


def policy_text(mode: str, mx: list[str], max_age: int = 86400) -> str:
    """A policy file as RFC 8461 §3.2 writes it (CRLF lines)."""
    lines = ["version: STSv1", f"mode: {mode}", *(f"mx: {m}" for m in mx), f"max_age: {max_age}"]
    return "\r\n".join(lines) + "\r\n"


class PolicyServer:
    """HTTPS policy host on `ip`:`port` for `domains` (certificate from `ca`)."""

    def __init__(self, ip: str, ca: LocalCA, domains: list[str]) -> None:
        if not ip.startswith("127."):
            raise ValueError("loopback only")
        self.ip = ip
        self.port = free_port([ip])
        self.policies: dict[str, Published] = {}  # by Host (mta-sts.<domain>)
        self.requests: list[str] = []  # Host of each GET, in order
        self._lock = threading.Lock()
        self._context = ca.server_context(*(f"mta-sts.{d}" for d in domains))
        self._httpd: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def publish(
        self, domain: str, body: str, *, status: int = 200, ctype: str = "text/plain"
    ) -> None:
        """Serve `body` for mta-sts.<domain> (with `status` and content type `ctype`)."""
        with self._lock:
            self.policies[f"mta-sts.{domain}"] = Published(body, status, ctype)

    def request_count(self, domain: str) -> int:
        with self._lock:
            return sum(1 for host in self.requests if host == f"mta-sts.{domain}")

    def start(self) -> PolicyServer:
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                host = (self.headers.get("Host") or "").split(":")[0].lower()
                with server._lock:
                    server.requests.append(host)
                    published = server.policies.get(host)
                if self.path != POLICY_PATH or published is None:
                    self.send_error(404)
                    return
                body = published.body.encode()
                self.send_response(published.status)
                self.send_header("Content-Type", published.content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet: the test reads `requests`

        httpd = http.server.ThreadingHTTPServer((self.ip, self.port), Handler)
        httpd.daemon_threads = True
        httpd.socket = self._context.wrap_socket(httpd.socket, server_side=True)
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    def __enter__(self) -> PolicyServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def publish_sts(dns: DnsServer, domain: str, server: PolicyServer, policy_id: str) -> None:
    """The DNS side of an MTA-STS domain: TXT `_mta-sts.<domain>` "v=STSv1; id=<id>;"
    (TTL 1 s, so a new id is seen at once) and `mta-sts.<domain>` A -> the server."""
    dns.add_txt(f"_mta-sts.{domain}", [f"v=STSv1; id={policy_id};"], ttl=1)
    dns.add_a(f"mta-sts.{domain}", [server.ip], ttl=300)


def tls_domain(
    net: MiniInternet, ca: LocalCA, domain: str, mx: int, *, names: dict[int, str] | None = None
) -> list[Receiver]:
    """`domain` with `mx` MX hosts mx1.<domain> (preference 10), mx2 (20), ..., each a
    receiver offering STARTTLS with a certificate `ca` signed for its own name, or for
    `names[i]` (1-based) where given: a certificate for the wrong name."""
    receivers = []
    for i in range(1, mx + 1):
        name = (names or {}).get(i, f"mx{i}.{domain}")
        receivers.append(net.receiver(tls_context=ca.server_context(name)))
    net.publish(domain, [r.ip for r in receivers])
    return receivers
