"""engine.runtime.tlsguard: routes screened by MTA-STS, connections opened by plan, counts."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import pytest

from engine.config import from_dict
from engine.model import (
    ConnectFailure,
    FailureKind,
    Phase,
    RouteFailure,
    RouteFailureKind,
    TlsPolicy,
    TransportFailure,
)
from engine.net.mx import MxHost, Route
from engine.runtime.tlsguard import TlsGuard
from engine.sched.mta_sts import StsMode, StsPolicy
from engine.telemetry.metrics import CheckedTally
from tests.support.tls_certs import LocalCA

ROUTE = Route(
    "d.test",
    (MxHost("mx1.d.test", 10, ("127.0.0.2",)), MxHost("mx2.d.test", 20, ("127.0.0.3",))),
    implicit=False,
)
ENFORCE = StsPolicy(StsMode.ENFORCE, ("mx2.d.test",), 86400)
TESTING = StsPolicy(StsMode.TESTING, ("mx1.d.test",), 86400)


class FakeSts:
    def __init__(self, policy: StsPolicy | None) -> None:
        self.policy_ = policy
        self.asked: list[str] = []

    async def policy(self, domain: str) -> StsPolicy | None:
        self.asked.append(domain)
        return self.policy_


class Session:
    def __init__(self, tls_active: bool) -> None:
        self.tls_active, self.tls_fallback = tls_active, None


class FakeOpen:
    """open_session stand-in: answers from `script` in order, records the arguments."""

    def __init__(self, *script: Any) -> None:
        self.script = list(script)
        self.calls: list[dict[str, Any]] = []

    async def __call__(self, address: str, port: int, **kwargs: Any) -> Any:
        self.calls.append(kwargs)
        return self.script.pop(0)


def tls_failure(detail: str) -> ConnectFailure:
    failure = TransportFailure(Phase.STARTTLS, FailureKind.TLS, detail)
    return ConnectFailure("mx1.d.test", "127.0.0.2", failure=failure)


def guard(
    sts: FakeSts | None, opener: FakeOpen | None = None, **domain: Any
) -> tuple[TlsGuard, CheckedTally]:
    settings = from_dict({"domains": {"d.test": domain}} if domain else {})
    tally = CheckedTally()
    return TlsGuard(settings, tally, sts, opener or FakeOpen()), tally  # type: ignore[arg-type]


def counts(tally: CheckedTally) -> dict[tuple[str, ...], int]:
    return {(name, *labels): n for name, labels, n in tally.drain()[0]}


async def test_enforce_keeps_the_listed_hosts_and_carries_the_policy() -> None:
    g, tally = guard(FakeSts(ENFORCE))
    got = await g.screen(ROUTE)
    assert isinstance(got, Route)
    assert [h.name for h in got.hosts] == ["mx2.d.test"] and got.sts is ENFORCE
    assert counts(tally) == {("volley_mta_sts_results", "enforce", "mx_mismatch"): 1}


async def test_enforce_without_a_listed_host_is_a_policy_route_failure() -> None:
    g, _ = guard(FakeSts(StsPolicy(StsMode.ENFORCE, ("*.provider.test",), 60)))
    got = await g.screen(ROUTE)
    assert isinstance(got, RouteFailure) and got.kind is RouteFailureKind.POLICY
    assert got.detail == (
        "the MTA-STS policy of d.test (mode enforce) lists none of its MX hosts"
        " (mx1.d.test, mx2.d.test); it allows *.provider.test"
    )


async def test_testing_keeps_every_host() -> None:
    g, tally = guard(FakeSts(TESTING))
    got = await g.screen(ROUTE)
    assert isinstance(got, Route) and got.hosts == ROUTE.hosts and got.sts is TESTING
    assert counts(tally) == {("volley_mta_sts_results", "testing", "mx_mismatch"): 1}


@pytest.mark.parametrize("domain", [{"mta_sts": False}, {"tls": "disabled"}])
async def test_the_per_domain_ways_out_skip_mta_sts(domain: dict[str, Any]) -> None:
    sts = FakeSts(ENFORCE)
    g, _ = guard(sts, **domain)
    assert await g.screen(ROUTE) is ROUTE and sts.asked == []


async def test_mta_sts_off_or_no_policy_leaves_the_route() -> None:
    g, _ = guard(None)
    assert await g.screen(ROUTE) is ROUTE
    g, _ = guard(FakeSts(None))
    assert await g.screen(ROUTE) is ROUTE
    g, _ = guard(FakeSts(StsPolicy(StsMode.NONE, (), 60)))
    assert await g.screen(ROUTE) is ROUTE


async def test_verify_gets_a_verifying_context_and_counts() -> None:
    opener = FakeOpen(Session(True))
    g, tally = guard(None, opener)
    got = await g.open(None, "127.0.0.2", 25, mx_host="mx1.d.test", tls=TlsPolicy.VERIFY)
    assert isinstance(got, Session)
    context = opener.calls[0]["ssl_context"]
    assert isinstance(context, ssl.SSLContext) and context.check_hostname
    assert counts(tally) == {("volley_tls_sessions", "verify", "ok"): 1}


async def test_opportunistic_passes_through_without_a_context() -> None:
    opener = FakeOpen(Session(False))
    g, tally = guard(None, opener)
    await g.open(None, "127.0.0.2", 25, mx_host="mx1.d.test", tls=TlsPolicy.OPPORTUNISTIC, x=1)
    assert opener.calls == [{"mx_host": "mx1.d.test", "tls": TlsPolicy.OPPORTUNISTIC, "x": 1}]
    assert counts(tally) == {("volley_tls_sessions", "opportunistic", "unavailable"): 1}


async def test_enforce_verifies_and_names_the_policy_in_the_failure() -> None:
    opener = FakeOpen(tls_failure("certificate verify failed: hostname mismatch for mx2.d.test"))
    g, tally = guard(None, opener)
    got = await g.open(ENFORCE, "127.0.0.3", 25, mx_host="mx2.d.test", tls=TlsPolicy.OPPORTUNISTIC)
    assert opener.calls[0]["tls"] is TlsPolicy.VERIFY and len(opener.calls) == 1  # no retry
    assert isinstance(got, ConnectFailure) and got.failure is not None
    assert got.failure.detail == (
        "MTA-STS policy (mode enforce): certificate verify failed: hostname mismatch for mx2.d.test"
    )
    assert counts(tally) == {
        ("volley_tls_sessions", "verify", "verify_failed"): 1,
        ("volley_mta_sts_results", "enforce", "cert_invalid"): 1,
    }


async def test_enforce_refuses_a_host_the_policy_does_not_list() -> None:
    opener = FakeOpen()
    g, _ = guard(None, opener)
    got = await g.open(ENFORCE, "127.0.0.2", 25, mx_host="mx1.d.test", tls=TlsPolicy.REQUIRED)
    assert isinstance(got, ConnectFailure) and opener.calls == []


async def test_testing_counts_the_failure_then_opens_as_usual() -> None:
    opener = FakeOpen(tls_failure("STARTTLS not offered"), Session(False))
    g, tally = guard(None, opener)
    got = await g.open(TESTING, "127.0.0.2", 25, mx_host="mx1.d.test", tls=TlsPolicy.OPPORTUNISTIC)
    assert isinstance(got, Session)
    assert [c["tls"] for c in opener.calls] == [TlsPolicy.VERIFY, TlsPolicy.OPPORTUNISTIC]
    assert "ssl_context" not in opener.calls[1]
    assert counts(tally) == {
        ("volley_tls_sessions", "verify", "unavailable"): 1,
        ("volley_mta_sts_results", "testing", "starttls_missing"): 1,
        ("volley_tls_sessions", "opportunistic", "unavailable"): 1,
    }


async def test_testing_success_is_counted_once() -> None:
    opener = FakeOpen(Session(True))
    g, tally = guard(None, opener)
    await g.open(TESTING, "127.0.0.2", 25, mx_host="mx1.d.test", tls=TlsPolicy.OPPORTUNISTIC)
    assert len(opener.calls) == 1
    assert counts(tally)[("volley_mta_sts_results", "testing", "success")] == 1


async def test_a_ca_file_gone_since_the_start_is_a_local_failure(tmp_path: Path) -> None:
    ca = LocalCA(tmp_path)
    opener = FakeOpen()
    settings = from_dict({"smtp": {"tls_ca_file": str(ca.cert_path)}})
    g = TlsGuard(settings, CheckedTally(), None, opener)
    ca.cert_path.unlink()
    got = await g.open(None, "127.0.0.2", 25, mx_host="mx1.d.test", tls=TlsPolicy.VERIFY)
    assert isinstance(got, ConnectFailure) and got.failure is not None
    assert got.failure.kind is FailureKind.LOCAL and "smtp.tls_ca_file" in got.failure.detail
    assert opener.calls == []
