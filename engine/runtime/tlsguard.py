"""TLS policies on the delivery path: MTA-STS screening of routes, verified TLS sessions.

Responsible for: applying a domain's MTA-STS policy to its resolved route before
anything else uses the route (`TlsGuard.screen`: under enforce the MX hosts the policy
does not list are dropped, and none left is a `RouteFailure` of kind POLICY, deferred;
sites and limits are computed from what is left, so one domain's policy never narrows
another domain that shares its MX hosts — KumoMTA PR 557), opening each connection as
its plan says (`TlsGuard.open`: `tls = "verify"` and enforce get a verifying context and
never a plaintext fallback; testing tries verified TLS, counts a failure, then opens as
usual), naming the policy in a deferral's text, and counting
volley_tls_sessions_total{policy, result} and volley_mta_sts_results_total{mode, result}.
Not responsible for: discovering policies (engine.net.sts), the decisions themselves
(engine.sched.mta_sts), handshakes (engine.net.session), or trying the next MX host
(engine.runtime.delivery).
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import Any

from engine.config import Settings
from engine.model import (
    ConnectFailure,
    FailureKind,
    Phase,
    RouteFailure,
    RouteFailureKind,
    TlsPolicy,
    TransportFailure,
)
from engine.net.dns import DnsClient
from engine.net.mx import Route
from engine.net.session import SmtpSession
from engine.net.sts import StsResolver
from engine.net.sts_store import FILE_NAME, StsStore
from engine.net.targets import TargetRules, usable_addresses
from engine.net.tls import TlsResult, tls_result, verify_context
from engine.sched.mta_sts import StsMode, StsPolicy, StsResult, host_plan, screen_hosts
from engine.telemetry.metrics import Tally

__all__ = ["TlsGuard", "sts_resolver"]

OpenFn = Callable[..., Awaitable[SmtpSession | ConnectFailure]]

_STS_RESULT = {
    TlsResult.OK: StsResult.SUCCESS,
    TlsResult.VERIFY_FAILED: StsResult.CERT_INVALID,
    TlsResult.UNAVAILABLE: StsResult.STARTTLS_MISSING,
    TlsResult.HANDSHAKE_FAILED: StsResult.HANDSHAKE_FAILED,
}


def sts_resolver(
    settings: Callable[[], Settings], dns: DnsClient, tally: Tally, wall: Callable[[], float]
) -> StsResolver:
    """The worker's MTA-STS resolver over its DNS client, its cache in the spool.
    `settings()` is read per fetch, so a reload's CA file and target rules apply; `wall`
    is the clock policy ages are counted on (they outlive the process)."""
    s = settings()

    def usable(addresses: Sequence[str]) -> Sequence[str]:
        return usable_addresses(addresses, TargetRules.from_settings(settings()).ignore)

    def count(mode: str, result: StsResult) -> None:
        tally.inc("volley_mta_sts_results", mode, result.value)

    return StsResolver(
        dns,
        StsStore(s.spool_path / FILE_NAME),
        clock=wall,
        context=lambda: verify_context(settings().tls_ca_file),
        usable=usable,
        count=count,
        port=s.mta_sts_port,
        negative_ttl=s.dns_negative_ttl,
    )


class TlsGuard:
    def __init__(
        self, settings: Settings, tally: Tally, sts: StsResolver | None, open_fn: OpenFn
    ) -> None:
        self._s = settings
        self._tally = tally
        self._sts = sts
        self._open = open_fn

    def reconfigure(self, settings: Settings) -> None:
        self._s = settings

    async def screen(self, route: Route) -> Route | RouteFailure:
        """`route` under its domain's MTA-STS policy (see the module docstring)."""
        domain = route.domain
        config = self._s.policy(domain)
        if (
            self._sts is None
            or not self._s.mta_sts
            or not config.mta_sts
            or config.tls is TlsPolicy.DISABLED
        ):
            return route
        policy = await self._sts.policy(domain)
        if policy is None or policy.mode is StsMode.NONE:
            return route
        split = screen_hosts(policy, [h.name for h in route.hosts])
        mode = policy.mode.value
        for _ in split.mismatched:
            self._tally.inc("volley_mta_sts_results", mode, StsResult.MX_MISMATCH.value)
        if not split.kept:
            return RouteFailure(
                domain,
                RouteFailureKind.POLICY,
                f"the MTA-STS policy of {domain} (mode {mode}) lists none of its MX hosts"
                f" ({', '.join(split.mismatched)}); it allows {', '.join(policy.mx) or 'none'}",
            )
        kept = set(split.kept)
        return replace(route, hosts=tuple(h for h in route.hosts if h.name in kept), sts=policy)

    async def open(
        self,
        sts: StsPolicy | None,
        address: str,
        port: int,
        *,
        mx_host: str,
        tls: TlsPolicy,
        **kwargs: Any,
    ) -> SmtpSession | ConnectFailure:
        """open_session(address, port, mx_host=, tls=, **kwargs) under the domain's `tls`
        and the route's MTA-STS policy `sts` (Route.sts)."""
        plan = host_plan(sts, mx_host, tls)
        mode = plan.mode
        if not plan.allowed:  # screened under an older policy than the one in force
            detail = f"MTA-STS policy (mode enforce) does not list {mx_host}"
            refused = TransportFailure(Phase.CONNECT, FailureKind.TLS, detail)
            return ConnectFailure(mx_host, address, failure=refused)
        got = await self._attempt(address, port, mx_host, plan.tls, kwargs)
        result = tls_result(plan.tls, got)
        if mode is not None and result is not None:
            self._tally.inc("volley_mta_sts_results", mode.value, _STS_RESULT[result].value)
        if plan.fallback is not None and result not in (None, TlsResult.OK):
            # Testing: the failure is counted; the mail goes as it would without a policy.
            return await self._attempt(address, port, mx_host, plan.fallback, kwargs)
        if mode is StsMode.ENFORCE and isinstance(got, ConnectFailure):
            failure = got.failure
            if failure is not None and failure.kind is FailureKind.TLS:
                detail = f"MTA-STS policy (mode enforce): {failure.detail}"
                return replace(got, failure=replace(failure, detail=detail))
        return got

    async def _attempt(
        self, address: str, port: int, mx_host: str, tls: TlsPolicy, kwargs: dict[str, Any]
    ) -> SmtpSession | ConnectFailure:
        if tls is TlsPolicy.VERIFY:
            try:
                context = verify_context(self._s.tls_ca_file)
            except (OSError, ssl.SSLError) as exc:  # the file changed since it was checked
                detail = f"cannot load smtp.tls_ca_file: {exc}"
                failure = TransportFailure(Phase.STARTTLS, FailureKind.LOCAL, detail)
                return ConnectFailure(mx_host, address, failure=failure)
            kwargs = {**kwargs, "ssl_context": context}
        got = await self._open(address, port, mx_host=mx_host, tls=tls, **kwargs)
        result = tls_result(tls, got)
        if result is not None:
            self._tally.inc("volley_tls_sessions", tls.value, result.value)
        return got
