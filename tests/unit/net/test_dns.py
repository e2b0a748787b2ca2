"""AiodnsClient: nameserver parsing, error mapping, deadline, loop binding — against the
test DNS server on loopback."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from engine.net.dns import (
    AiodnsClient,
    DnsAnswer,
    DnsFailure,
    DnsFailureKind,
    DnsRecord,
)
from tests.support.dns_server import DnsServer


@pytest.fixture
def dns() -> Iterator[DnsServer]:
    with DnsServer() as server:
        yield server


@pytest.fixture
async def client(dns: DnsServer) -> AsyncIterator[AiodnsClient]:
    c = AiodnsClient([dns.address], timeout=1.0, tries=1)
    yield c
    await c.close()


# -- construction ----------------------------------------------------------------------------


def test_constructing_needs_no_loop_and_validates_eagerly() -> None:
    c = AiodnsClient(["127.0.0.1:5353", "[::1]:53"], timeout=0.5, tries=3)
    assert "idle" in repr(c) and "127.0.0.1:5353,[::1]:53" in repr(c)
    assert c.deadline == pytest.approx(0.5 * 7)  # 0.5 + 1 + 2: c-ares doubles per try
    assert AiodnsClient(None, timeout=1.0, tries=1, deadline=0.25).deadline == 0.25
    with pytest.raises(ValueError):
        AiodnsClient([])
    with pytest.raises(ValueError):
        AiodnsClient(["not-an-ip"])
    with pytest.raises(ValueError):
        AiodnsClient(["127.0.0.1"], timeout=0)
    with pytest.raises(ValueError):
        AiodnsClient(["127.0.0.1"], tries=0)


# -- answers ---------------------------------------------------------------------------------


async def test_mx_answer_has_records_and_ttls(dns: DnsServer, client: AiodnsClient) -> None:
    dns.add_mx("good.test", [(10, "MX1.good.test"), (20, "mx2.good.test")], ttl=120)
    result = await client.query("Good.Test.", "MX")
    assert result == DnsAnswer(
        "good.test",
        "MX",
        (
            DnsRecord("good.test", "MX", 120, "mx1.good.test", 10),
            DnsRecord("good.test", "MX", 120, "mx2.good.test", 20),
        ),
    )


async def test_a_and_aaaa(dns: DnsServer, client: AiodnsClient) -> None:
    dns.add_a("h.test", ["127.0.0.1", "127.0.0.2"], ttl=30)
    dns.add_aaaa("h.test", ["::1"], ttl=40)
    a = await client.query("h.test", "A")
    aaaa = await client.query("h.test", "AAAA")
    assert isinstance(a, DnsAnswer) and isinstance(aaaa, DnsAnswer)
    assert [(r.data, r.ttl) for r in a.records] == [("127.0.0.1", 30), ("127.0.0.2", 30)]
    assert [(r.rtype, r.data, r.ttl) for r in aaaa.records] == [("AAAA", "::1", 40)]


async def test_cname_is_kept_in_the_answer_before_the_mx(
    dns: DnsServer, client: AiodnsClient
) -> None:
    dns.add_mx("good.test", [(10, "mx1.good.test")])
    dns.add_cname("alias.test", "good.test", ttl=60)
    result = await client.query("alias.test", "MX")
    assert isinstance(result, DnsAnswer)
    assert [(r.rtype, r.name, r.data, r.ttl) for r in result.records] == [
        ("CNAME", "alias.test", "good.test", 60),
        ("MX", "good.test", "mx1.good.test", 300),
    ]


async def test_null_mx_exchange_is_empty(dns: DnsServer, client: AiodnsClient) -> None:
    dns.null_mx("nullmx.test")
    result = await client.query("nullmx.test", "MX")
    assert isinstance(result, DnsAnswer)
    assert [(r.preference, r.data) for r in result.records] == [(0, "")]


async def test_forty_mx_records_come_over_tcp(dns: DnsServer, client: AiodnsClient) -> None:
    dns.add_mx("big.test", [(i, f"mx{i:02d}.big.test") for i in range(40)])
    result = await client.query("big.test", "MX")
    assert isinstance(result, DnsAnswer)
    assert [r.preference for r in result.records] == list(range(40))
    assert dns.queries("big.test", transport="tcp") == 1


async def test_nxdomain_and_nodata(dns: DnsServer, client: AiodnsClient) -> None:
    dns.add_a("nomx.test", ["127.0.0.1"])
    nx = await client.query("missing.test", "MX")
    nodata = await client.query("nomx.test", "MX")
    assert isinstance(nx, DnsFailure) and nx.kind is DnsFailureKind.NXDOMAIN
    assert (nx.name, nx.rtype) == ("missing.test", "MX")
    assert isinstance(nodata, DnsFailure) and nodata.kind is DnsFailureKind.NODATA


async def test_cname_to_name_without_the_type_is_nodata(
    dns: DnsServer, client: AiodnsClient
) -> None:
    dns.add_a("target.test", ["127.0.0.1"])
    dns.add_cname("alias.test", "target.test")
    result = await client.query("alias.test", "MX")
    assert isinstance(result, DnsFailure) and result.kind is DnsFailureKind.NODATA


@pytest.mark.parametrize("setup", ["servfail", "refused"])
async def test_servfail_and_refused_are_temporary(
    dns: DnsServer, client: AiodnsClient, setup: str
) -> None:
    name = "broken.test"
    if setup == "servfail":
        dns.servfail(name)
    else:
        name = "outside.com"  # the test server refuses names outside its TLDs
    result = await client.query(name, "MX")
    assert isinstance(result, DnsFailure) and result.kind is DnsFailureKind.TEMPORARY
    assert "c-ares" in result.detail


async def test_connection_refused_is_temporary() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # The port is closed now: the kernel answers ICMP port unreachable on loopback.
    c = AiodnsClient([f"127.0.0.1:{port}"], timeout=0.5, tries=1, deadline=3.0)
    try:
        result = await c.query("any.test", "A")
    finally:
        await c.close()
    assert isinstance(result, DnsFailure) and result.kind is DnsFailureKind.TEMPORARY


async def test_blackhole_is_temporary_at_the_deadline(dns: DnsServer) -> None:
    dns.blackhole("silent.test")
    # c-ares alone would wait 1 + 2 + 4 s; the deadline must cut that to 0.3 s.
    c = AiodnsClient([dns.address], timeout=1.0, tries=3, deadline=0.3)
    try:
        t0 = time.monotonic()
        result = await c.query("silent.test", "MX")
        elapsed = time.monotonic() - t0
    finally:
        await c.close()
    assert isinstance(result, DnsFailure) and result.kind is DnsFailureKind.TEMPORARY
    assert "within 0.3s" in result.detail
    assert 0.25 <= elapsed < 2.0  # generous: the VM is shared and noisy


async def test_unknown_type_is_a_bug(client: AiodnsClient) -> None:
    with pytest.raises(ValueError):
        await client.query("x.test", "BOGUS")


async def test_closed_client_refuses_queries(dns: DnsServer) -> None:
    c = AiodnsClient([dns.address], timeout=1.0, tries=1)
    dns.add_a("h.test", ["127.0.0.1"])
    assert isinstance(await c.query("h.test", "A"), DnsAnswer)
    assert "open" in repr(c)
    await c.close()
    await c.close()  # idempotent
    assert "closed" in repr(c)
    with pytest.raises(RuntimeError):
        await c.query("h.test", "A")


def test_resolver_is_bound_to_the_loop_that_first_used_it(dns: DnsServer) -> None:
    dns.add_a("h.test", ["127.0.0.1"])
    c = AiodnsClient([dns.address], timeout=1.0, tries=1)
    with asyncio.Runner() as first:
        assert isinstance(first.run(c.query("h.test", "A")), DnsAnswer)
        with asyncio.Runner() as second, pytest.raises(RuntimeError, match="another event loop"):
            second.run(c.query("h.test", "A"))
        first.run(c.close())


async def test_the_channel_is_recycled_so_its_cache_stays_bounded(dns: DnsServer) -> None:
    """c-ares caches every answer for its TTL and pycares cannot turn that off: a fresh
    channel every `recycle_after` queries bounds it (the old one closes once idle)."""
    for i in range(7):
        dns.add_mx(f"r{i}.test", [(10, "mx.r.test")])
    client = AiodnsClient([dns.address], timeout=1.0, tries=1, recycle_after=3)
    try:
        got = await asyncio.gather(*(client.query(f"r{i}.test", "MX") for i in range(3)))
        first = client._resolver
        got += [await client.query(f"r{i}.test", "MX") for i in range(3, 7)]
        assert all(isinstance(g, DnsAnswer) for g in got)
        assert client._resolver is not first and client._retired == []  # closed when idle
        assert dns.queries("r0.test", "MX") == 1
        again = await client.query("r0.test", "MX")  # the old cache went with its channel
        assert isinstance(again, DnsAnswer) and dns.queries("r0.test", "MX") == 2
    finally:
        await client.close()
