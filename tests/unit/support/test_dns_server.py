"""The test DNS server answers exactly what it was told, over UDP and TCP."""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterator

import aiodns
import pycares
import pytest
from dnslib import QTYPE, RCODE, DNSRecord  # type: ignore[import-untyped]

from tests.support.dns_server import DnsServer

# Short client timeouts: every answer comes from loopback in well under a millisecond.
_TIMEOUT = 2.0


@pytest.fixture
def dns() -> Iterator[DnsServer]:
    with DnsServer() as server:
        yield server


def ask(dns: DnsServer, name: str, qtype: str, *, tcp: bool = False) -> DNSRecord:
    wire = DNSRecord.question(name, qtype).send(dns.host, dns.port, tcp=tcp, timeout=_TIMEOUT)
    return DNSRecord.parse(wire)


def answers(reply: DNSRecord) -> list[tuple[str, str, int, str]]:
    return [(str(r.rname), QTYPE[r.rtype], r.ttl, str(r.rdata)) for r in reply.rr]


def test_address_is_loopback_and_port_is_bound_for_udp_and_tcp(dns: DnsServer) -> None:
    assert dns.address == f"127.0.0.1:{dns.port}"
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        s = socket.socket(socket.AF_INET, kind)
        with s, pytest.raises(OSError):
            s.bind(("127.0.0.1", dns.port))


def test_two_servers_get_different_ports() -> None:
    with DnsServer() as a, DnsServer() as b:
        assert a.port != b.port


def test_fixed_port_that_is_taken_for_udp_raises() -> None:
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with udp:
        udp.bind(("127.0.0.1", 0))
        server = DnsServer(port=udp.getsockname()[1])
        with pytest.raises(OSError):
            server.start()


def test_address_before_start_raises() -> None:
    with pytest.raises(RuntimeError):
        _ = DnsServer().address


def test_mx_a_and_aaaa_answers(dns: DnsServer) -> None:
    dns.add_mx("good.test", [(10, "mx1.good.test"), (20, "mx2.good.test")], ttl=120)
    dns.add_a("mx1.good.test", ["127.0.0.1", "127.0.0.2"])
    dns.add_aaaa("mx1.good.test", ["::1"], ttl=60)

    mx = ask(dns, "good.test", "MX")
    assert mx.header.rcode == RCODE.NOERROR and mx.header.aa == 1
    assert answers(mx) == [
        ("good.test.", "MX", 120, "10 mx1.good.test."),
        ("good.test.", "MX", 120, "20 mx2.good.test."),
    ]
    assert [str(r.rdata) for r in ask(dns, "MX1.Good.Test", "A").rr] == ["127.0.0.1", "127.0.0.2"]
    assert answers(ask(dns, "mx1.good.test", "AAAA")) == [("mx1.good.test.", "AAAA", 60, "::1")]


def test_add_replaces_the_rrset(dns: DnsServer) -> None:
    dns.add_a("h.test", ["127.0.0.1"])
    dns.add_a("h.test", ["127.0.0.9"])
    assert [str(r.rdata) for r in ask(dns, "h.test", "A").rr] == ["127.0.0.9"]


def test_nxdomain_carries_the_soa(dns: DnsServer) -> None:
    reply = ask(dns, "missing.test", "MX")
    assert reply.header.rcode == RCODE.NXDOMAIN
    assert reply.rr == []
    assert [(str(r.rname), QTYPE[r.rtype]) for r in reply.auth] == [("test.", "SOA")]


def test_nodata_is_noerror_with_soa(dns: DnsServer) -> None:
    dns.add_a("nomx.test", ["127.0.0.1"])
    reply = ask(dns, "nomx.test", "MX")
    assert reply.header.rcode == RCODE.NOERROR
    assert reply.rr == []
    assert [QTYPE[r.rtype] for r in reply.auth] == ["SOA"]


def test_empty_non_terminal_exists(dns: DnsServer) -> None:
    dns.add_a("mx.parent.test", ["127.0.0.1"])
    reply = ask(dns, "parent.test", "A")
    assert reply.header.rcode == RCODE.NOERROR  # RFC 8020: not NXDOMAIN
    assert reply.rr == []


def test_soa_ttl_is_configurable() -> None:
    with DnsServer(soa_ttl=30) as dns:
        soa = ask(dns, "missing.test", "A").auth[0]
        assert soa.ttl == 30
        assert soa.rdata.times[-1] == 30  # MINIMUM: the negative-caching TTL (RFC 2308)


def test_cname_chain_comes_before_the_target_records(dns: DnsServer) -> None:
    dns.add_mx("good.test", [(10, "mx1.good.test")])
    dns.add_cname("alias.test", "middle.test")
    dns.add_cname("middle.test", "good.test")
    assert answers(ask(dns, "alias.test", "MX")) == [
        ("alias.test.", "CNAME", 300, "middle.test."),
        ("middle.test.", "CNAME", 300, "good.test."),
        ("good.test.", "MX", 300, "10 mx1.good.test."),
    ]
    # Asking for the CNAME itself does not follow it.
    assert answers(ask(dns, "alias.test", "CNAME")) == [
        ("alias.test.", "CNAME", 300, "middle.test.")
    ]


def test_cname_to_missing_name_is_nxdomain_with_the_cname(dns: DnsServer) -> None:
    dns.add_cname("dangling.test", "gone.test")
    reply = ask(dns, "dangling.test", "A")
    assert reply.header.rcode == RCODE.NXDOMAIN
    assert [QTYPE[r.rtype] for r in reply.rr] == ["CNAME"]


def test_cname_loop_is_servfail(dns: DnsServer) -> None:
    dns.add_cname("a.test", "b.test")
    dns.add_cname("b.test", "a.test")
    assert ask(dns, "a.test", "A").header.rcode == RCODE.SERVFAIL


def test_null_mx(dns: DnsServer) -> None:
    dns.null_mx("nullmx.test")
    assert answers(ask(dns, "nullmx.test", "MX")) == [("nullmx.test.", "MX", 300, "0 .")]


def test_servfail_for_every_type_until_the_name_is_set_again(dns: DnsServer) -> None:
    dns.add_a("broken.test", ["127.0.0.1"])
    dns.servfail("broken.test")
    for qtype in ("MX", "A", "AAAA"):
        assert ask(dns, "broken.test", qtype).header.rcode == RCODE.SERVFAIL
    dns.add_a("broken.test", ["127.0.0.3"])
    reply = ask(dns, "broken.test", "A")
    assert reply.header.rcode == RCODE.NOERROR
    assert [str(r.rdata) for r in reply.rr] == ["127.0.0.3"]


def test_blackhole_counts_the_query_but_never_answers(dns: DnsServer) -> None:
    dns.blackhole("silent.test")
    q = DNSRecord.question("silent.test", "A")
    with pytest.raises(TimeoutError):
        q.send(dns.host, dns.port, timeout=0.2)  # the only way to observe silence
    assert dns.queries("silent.test", "A") == 1


def test_remove_makes_the_name_nxdomain(dns: DnsServer) -> None:
    dns.add_mx("gone.test", [(10, "mx.gone.test")])
    dns.remove("gone.test")
    assert ask(dns, "gone.test", "MX").header.rcode == RCODE.NXDOMAIN


def test_names_outside_test_tlds_are_refused_and_cannot_be_added(dns: DnsServer) -> None:
    assert ask(dns, "example.com", "A").header.rcode == RCODE.REFUSED
    with pytest.raises(ValueError):
        dns.add_a("example.com", ["127.0.0.1"])
    with pytest.raises(ValueError):
        dns.add_mx("", [(10, "mx.test")])


def test_large_udp_answer_is_truncated_with_question_and_full_over_tcp(dns: DnsServer) -> None:
    dns.add_mx("big.test", [(i, f"mx{i:02d}.big.test") for i in range(40)])
    udp = ask(dns, "big.test", "MX")
    assert udp.header.tc == 1
    assert str(udp.q.qname) == "big.test."  # c-ares needs the question (EBADRESP otherwise)
    assert udp.rr == []
    tcp = ask(dns, "big.test", "MX", tcp=True)
    assert tcp.header.tc == 0
    assert len(tcp.rr) == 40
    assert dns.queries("big.test", "MX", transport="udp") == 1
    assert dns.queries("big.test", "MX", transport="tcp") == 1


def test_several_queries_on_one_tcp_connection(dns: DnsServer) -> None:
    dns.add_a("one.test", ["127.0.0.1"])
    dns.add_a("two.test", ["127.0.0.2"])
    with socket.create_connection((dns.host, dns.port), timeout=_TIMEOUT) as s:
        for name in ("one.test", "two.test"):
            packet = DNSRecord.question(name, "A").pack()
            s.sendall(struct.pack("!H", len(packet)) + packet)
        replies = []
        for _ in range(2):
            (size,) = struct.unpack("!H", _recv_exact(s, 2))
            replies.append(DNSRecord.parse(_recv_exact(s, size)))
    assert [str(r.rr[0].rdata) for r in replies] == ["127.0.0.1", "127.0.0.2"]


def _recv_exact(s: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        assert chunk, "server closed the connection"
        buf += chunk
    return buf


def test_garbage_is_ignored_and_the_server_keeps_answering(dns: DnsServer) -> None:
    dns.add_a("ok.test", ["127.0.0.1"])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(b"\x00\x01not dns", (dns.host, dns.port))
    assert [str(r.rdata) for r in ask(dns, "ok.test", "A").rr] == ["127.0.0.1"]


def test_query_counts_filter_by_name_type_and_transport(dns: DnsServer) -> None:
    dns.add_a("c.test", ["127.0.0.1"])
    ask(dns, "c.test", "A")
    ask(dns, "C.TEST.", "A")
    ask(dns, "c.test", "MX", tcp=True)
    ask(dns, "other.test", "A")
    assert dns.queries() == 4
    assert dns.queries("c.test") == 3
    assert dns.queries("c.test", "a") == 2
    assert dns.queries(qtype="MX") == 1
    assert dns.queries(transport="tcp") == 1
    assert dns.queries("nothing.test") == 0


def test_zone_edits_from_many_threads(dns: DnsServer) -> None:
    def edit(i: int) -> None:
        for j in range(50):
            dns.add_a(f"h{i}-{j}.test", [f"127.0.{i}.{j + 1}"])

    threads = [threading.Thread(target=edit, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [str(r.rdata) for r in ask(dns, "h3-49.test", "A").rr] == ["127.0.3.50"]


def test_stop_closes_the_port_and_is_idempotent() -> None:
    dns = DnsServer()
    dns.start()
    port = dns.port
    dns.stop()
    dns.stop()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=_TIMEOUT).close()


async def test_aiodns_follows_truncation_to_tcp(dns: DnsServer) -> None:
    dns.add_mx("big.test", [(i, f"mx{i:02d}.big.test") for i in range(40)])
    dns.null_mx("nullmx.test")
    resolver = aiodns.DNSResolver(nameservers=[dns.address], timeout=1.0, tries=1)
    try:
        big = await resolver.query_dns("big.test", "MX")
        null = await resolver.query_dns("nullmx.test", "MX")
        with pytest.raises(aiodns.error.DNSError) as e:
            await resolver.query_dns("missing.test", "MX")
    finally:
        await resolver.close()
    big_mx = [r.data for r in big.answer if isinstance(r.data, pycares.MXRecordData)]
    null_mx = [r.data for r in null.answer if isinstance(r.data, pycares.MXRecordData)]
    assert sorted(d.priority for d in big_mx) == list(range(40))
    assert dns.queries("big.test", transport="udp") == 1
    assert dns.queries("big.test", transport="tcp") == 1
    assert [(d.priority, d.exchange) for d in null_mx] == [(0, "")]
    assert e.value.args[0] == aiodns.error.ARES_ENOTFOUND
