"""engine.net.sts_fetch against a real HTTPS policy host on loopback (tests.support)."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator, Sequence

import pytest

from engine.net.dns import DnsAnswer, DnsFailure, DnsFailureKind, DnsRecord, DnsResult
from engine.net.sts_fetch import Fetched, FetchFailed, fetch_policy
from tests.support.sts_server import PolicyServer, policy_text
from tests.support.tls_certs import LocalCA

IP = "127.0.0.91"
POLICY = policy_text("enforce", ["mx1.f.test"])


class FakeDns:
    """A and AAAA answers from a table (the DnsClient port)."""

    def __init__(self, table: dict[tuple[str, str], list[str]]) -> None:
        self.table = table

    async def query(self, name: str, rtype: str) -> DnsResult:
        found = self.table.get((name, rtype))
        if not found:
            return DnsFailure(name, rtype, DnsFailureKind.NODATA, "no records")
        return DnsAnswer(name, rtype, tuple(DnsRecord(name, rtype, 60, a) for a in found))


@pytest.fixture(scope="module")
def ca() -> LocalCA:
    return LocalCA()


@pytest.fixture
def server(ca: LocalCA) -> Iterator[PolicyServer]:
    with PolicyServer(IP, ca, ["f.test"]) as s:
        yield s


def _all(addresses: Sequence[str]) -> Sequence[str]:
    return addresses


async def fetch(
    server: PolicyServer, ca: LocalCA, *, timeout: float = 10.0, usable=_all
) -> Fetched | FetchFailed:
    dns = FakeDns({("mta-sts.f.test", "A"): [server.ip]})
    return await fetch_policy(
        "f.test",
        dns=dns,
        port=server.port,
        context=ssl.create_default_context(cafile=ca.cert_path),
        usable=usable,
        timeout=timeout,
    )


async def test_a_200_text_plain_policy_is_fetched(server: PolicyServer, ca: LocalCA) -> None:
    server.publish("f.test", POLICY, ctype="text/plain; charset=utf-8")
    assert await fetch(server, ca) == Fetched(POLICY)
    assert server.requests == ["mta-sts.f.test"]


@pytest.mark.parametrize(
    ("status", "ctype", "body", "why"),
    [
        (404, "text/plain", POLICY, "HTTP 404"),
        (301, "text/plain", POLICY, "HTTP 301 (only 200 counts; redirects are not followed)"),
        (200, "text/html", POLICY, "content type text/html, not text/plain"),
        (200, "text/plain", "x" * (64 * 1024 + 1), "policy larger than 65536 bytes"),
    ],
)
async def test_answers_that_are_not_a_policy(
    server: PolicyServer, ca: LocalCA, status: int, ctype: str, body: str, why: str
) -> None:
    server.publish("f.test", body, status=status, ctype=ctype)
    got = await fetch(server, ca)
    assert isinstance(got, FetchFailed) and why in got.detail, got


async def test_a_certificate_from_an_untrusted_ca_is_refused(server: PolicyServer) -> None:
    server.publish("f.test", POLICY)
    got = await fetch(server, LocalCA())  # trusts another CA
    assert isinstance(got, FetchFailed)
    assert "certificate verify failed" in got.detail and server.requests == []


async def test_no_address_or_only_ignored_ones(server: PolicyServer, ca: LocalCA) -> None:
    got = await fetch_policy(
        "f.test", dns=FakeDns({}), port=server.port, context=ssl.create_default_context(),
        usable=_all,
    )  # fmt: skip
    assert got == FetchFailed("mta-sts.f.test: no A or AAAA record")
    got = await fetch(server, ca, usable=lambda addresses: [])
    assert got == FetchFailed(f"mta-sts.f.test: no usable address ({IP})")


async def test_a_silent_host_is_given_up_at_the_deadline(ca: LocalCA) -> None:
    accepted: list[asyncio.StreamWriter] = []

    async def stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)  # and never answers the TLS hello

    listener = await asyncio.start_server(stall, IP, 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        got = await fetch_policy(
            "f.test", dns=FakeDns({("mta-sts.f.test", "A"): [IP]}), port=port,
            context=ssl.create_default_context(cafile=ca.cert_path), usable=_all, timeout=0.3,
        )  # fmt: skip
        assert got == FetchFailed("mta-sts.f.test: no policy within 0.3s")
    finally:
        for writer in accepted:
            writer.close()
        listener.close()
        await listener.wait_closed()
