"""engine.sched.mta_sts: RFC 8461 parsing, MX matching, cache steps and plans (pure)."""

from __future__ import annotations

import pytest

from engine.model import TlsPolicy
from engine.net.sts import UNKNOWN_MODE
from engine.sched.mta_sts import (
    MAX_AGE,
    RETRY_AFTER,
    CachedPolicy,
    HostPlan,
    NoRecord,
    PolicyInvalid,
    Screen,
    Step,
    StsMode,
    StsPolicy,
    StsRecord,
    StsResult,
    host_plan,
    mx_matches,
    next_step,
    parse_policy,
    parse_record,
    screen_hosts,
)
from engine.telemetry.catalog import STS_MODES, STS_RESULTS

# RFC 8461 §3.2's example policy, as published (CRLF lines).
RFC_EXAMPLE = (
    "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\n"
    "mx: backupmx.example.com\r\nmax_age: 604800\r\n"
)

# -- the TXT record ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("texts", "expected"),
    [
        (["v=STSv1; id=20160831085700Z;"], "20160831085700Z"),  # RFC 8461 §3.1's example
        (["v=STSv1; id=abc"], "abc"),  # no trailing delimiter
        (["v=STSv1 ;id=abc; ext.name-1=x:y"], "abc"),  # whitespace, an extension field
        (["v=spf1 -all", "v=STSv1; id=1;"], "1"),  # other TXT records are discarded
    ],
)
def test_record_gives_the_policy_id(texts: list[str], expected: str) -> None:
    assert parse_record(texts) == StsRecord(expected)


@pytest.mark.parametrize(
    ("texts", "why"),
    [
        ([], "no MTA-STS TXT record"),
        (["v=spf1 -all"], "no MTA-STS TXT record"),
        (["v=STSv1; id=1;", "v=STSv1; id=2;"], "2 MTA-STS records"),  # §3.1: exactly one
        (["v=STSv1;"], "without id"),
        (["v=STSv1; id=bad-id;"], "malformed MTA-STS id"),  # 1*32(ALPHA / DIGIT)
        (["v=STSv1; id=" + "a" * 33], "malformed MTA-STS id"),
        (["v=STSv1; id"], "malformed MTA-STS record field"),
        (["V=STSv1; id=1;"], "no MTA-STS TXT record"),  # %s"v=STSv1": case-sensitive
    ],
)
def test_record_without_a_usable_policy_id(texts: list[str], why: str) -> None:
    got = parse_record(texts)
    assert isinstance(got, NoRecord) and why in got.detail


# -- the policy file ---------------------------------------------------------------------


def test_the_rfc_example_policy() -> None:
    assert parse_policy(RFC_EXAMPLE) == StsPolicy(
        StsMode.ENFORCE, ("mail.example.com", "*.example.net", "backupmx.example.com"), 604800
    )


def test_lf_lines_extension_fields_blank_lines_and_a_bom_are_fine() -> None:
    text = "\ufeffversion: STSv1\nmode:testing\n\nmx:  MX1.Example.COM.  \nsomething_new: 1\n"
    text += "max_age: 86400"
    assert parse_policy(text) == StsPolicy(StsMode.TESTING, ("mx1.example.com",), 86400)


def test_ip_addresses_in_mx_are_skipped_not_matched() -> None:
    """postfix-tlspol #70: `mx: 212.114.86.56` beside names."""
    text = RFC_EXAMPLE.replace("mx: backupmx.example.com", "mx: 192.0.2.1\r\nmx: [2001:db8::1]")
    policy = parse_policy(text)
    assert isinstance(policy, StsPolicy)
    assert policy.mx == ("mail.example.com", "*.example.net")
    assert not policy.allows("192.0.2.1")


def test_max_age_over_a_year_is_clamped() -> None:
    policy = parse_policy(RFC_EXAMPLE.replace("604800", "9999999999"))
    assert isinstance(policy, StsPolicy) and policy.max_age == MAX_AGE


def test_mode_none_needs_no_mx() -> None:
    assert parse_policy("version: STSv1\nmode: none\nmax_age: 1\n") == StsPolicy(
        StsMode.NONE, (), 1
    )


@pytest.mark.parametrize(
    ("text", "why"),
    [
        # postfix-tlspol #95: "nmx" is an extension field, ignored: the policy has no mx.
        (RFC_EXAMPLE.replace("mx: ", "nmx: "), "without any mx line"),
        (RFC_EXAMPLE.replace("mx: mail.example.com", "mx mail.example.com"), "line 3"),
        (RFC_EXAMPLE.replace("version: STSv1", "version: STSv2"), "version"),
        (RFC_EXAMPLE.replace("version: STSv1\r\n", ""), "version"),
        (RFC_EXAMPLE.replace("mode: enforce", "mode: Enforce"), "mode"),
        (RFC_EXAMPLE.replace("mode: enforce", "mode: enforce\r\nmode: testing"), "twice"),
        (RFC_EXAMPLE.replace("max_age: 604800", "max_age: 1w"), "max_age"),
        (RFC_EXAMPLE.replace("max_age: 604800", "max_age: -1"), "max_age"),
        (RFC_EXAMPLE.replace("max_age: 604800", "max_age: 12345678901"), "max_age"),
        (RFC_EXAMPLE.replace("*.example.net", "mail.*.example.net"), "invalid mx pattern"),
        (RFC_EXAMPLE.replace("*.example.net", "*"), "invalid mx pattern"),
        (RFC_EXAMPLE.replace("*.example.net", "mail..example.net"), "invalid mx pattern"),
        (RFC_EXAMPLE.replace("*.example.net", "-bad.example.net"), "invalid mx pattern"),
        (RFC_EXAMPLE.replace("mx: backupmx.example.com", "mx:"), "line 5"),
        ("<html><body>Not found</body></html>", "line 1"),
        ("", "version"),
    ],
)
def test_an_invalid_policy_is_refused_whole(text: str, why: str) -> None:
    got = parse_policy(text)
    assert isinstance(got, PolicyInvalid), got
    assert why in got.detail


def test_the_same_value_twice_is_not_a_conflict() -> None:
    assert isinstance(parse_policy(RFC_EXAMPLE + "mode: enforce\r\n"), StsPolicy)


# -- MX matching -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "host", "matches"),
    [
        ("mail.example.com", "mail.example.com", True),
        ("mail.example.com", "MAIL.Example.com.", True),
        ("mail.example.com", "mail2.example.com", False),
        ("*.example.net", "mx1.example.net", True),
        ("*.example.net", "example.net", False),  # the wildcard is one whole label
        ("*.example.net", "a.b.example.net", False),  # ... and only one (§4.1)
        ("*.example.net", "mx1.example.net.evil.test", False),
        ("*.example.net", "mx1example.net", False),
    ],
)
def test_mx_matches(pattern: str, host: str, matches: bool) -> None:
    assert mx_matches(pattern, host) is matches


# -- the cache ---------------------------------------------------------------------------

T0 = 1_000_000.0
POLICY = StsPolicy(StsMode.ENFORCE, ("mx2.d.test",), 86400)
CACHED = CachedPolicy("1", POLICY, T0)


def test_cached_policy_lifetime() -> None:
    assert CACHED.expires_at == T0 + 86400
    assert CACHED.is_valid(T0 + 86399) and not CACHED.is_valid(T0 + 86400)
    assert not CACHED.wants_refresh(T0 + 43199) and CACHED.wants_refresh(T0 + 43200)


@pytest.mark.parametrize(
    ("cached", "record", "failed_at", "now", "step"),
    [
        (None, None, None, T0, Step.NO_POLICY),  # no TXT, nothing cached
        (None, StsRecord("1"), None, T0, Step.FETCH),  # first sight
        (CACHED, StsRecord("1"), None, T0 + 60, Step.USE_CACHED),  # same id, fresh
        (CACHED, StsRecord("2"), None, T0 + 60, Step.FETCH),  # new id: refetch
        (CACHED, None, None, T0 + 60, Step.USE_CACHED),  # TXT gone or DNS down: keep it
        (CACHED, None, None, T0 + 86400, Step.NO_POLICY),  # ... until it expires
        (CACHED, StsRecord("1"), None, T0 + 86400, Step.FETCH),  # expired: fetch again
        (CACHED, StsRecord("1"), None, T0 + 50000, Step.FETCH),  # past half: refresh early
        # A failed fetch of id 2 is not retried for RETRY_AFTER; the cached one applies.
        (CACHED, StsRecord("2"), T0 + 60, T0 + 60 + RETRY_AFTER - 1, Step.USE_CACHED),
        (CACHED, StsRecord("2"), T0 + 60, T0 + 60 + RETRY_AFTER, Step.FETCH),
        (None, StsRecord("2"), T0, T0 + 10, Step.NO_POLICY),
        (CACHED, StsRecord("1"), T0 + 50000, T0 + 50010, Step.USE_CACHED),  # refresh failed
    ],
)
def test_next_step(
    cached: CachedPolicy | None,
    record: StsRecord | None,
    failed_at: float | None,
    now: float,
    step: Step,
) -> None:
    assert next_step(cached, record, failed_at, now) is step


# -- routes and connections --------------------------------------------------------------


def test_enforce_keeps_only_listed_hosts_in_order() -> None:
    policy = StsPolicy(StsMode.ENFORCE, ("*.d.test",), 60)
    got = screen_hosts(policy, ["mx1.other.test", "mx2.d.test", "mx3.d.test"])
    assert got == Screen(("mx2.d.test", "mx3.d.test"), ("mx1.other.test",))


def test_enforce_with_no_listed_host_keeps_nothing() -> None:
    policy = StsPolicy(StsMode.ENFORCE, ("mx.provider.test",), 60)
    assert screen_hosts(policy, ["mx1.d.test"]) == Screen((), ("mx1.d.test",))


def test_testing_keeps_every_host_and_names_the_mismatched() -> None:
    policy = StsPolicy(StsMode.TESTING, ("mx2.d.test",), 60)
    assert screen_hosts(policy, ["mx1.d.test", "mx2.d.test"]) == Screen(
        ("mx1.d.test", "mx2.d.test"), ("mx1.d.test",)
    )


ENFORCE = StsPolicy(StsMode.ENFORCE, ("mx1.d.test",), 60)
TESTING = StsPolicy(StsMode.TESTING, ("mx1.d.test",), 60)
NONE = StsPolicy(StsMode.NONE, (), 60)
OPP, REQ, VER, OFF = (TlsPolicy.OPPORTUNISTIC, TlsPolicy.REQUIRED, TlsPolicy.VERIFY,
                      TlsPolicy.DISABLED)  # fmt: skip


@pytest.mark.parametrize(
    ("policy", "host", "tls", "plan"),
    [
        (None, "mx1.d.test", OPP, HostPlan(OPP)),
        (None, "mx1.d.test", VER, HostPlan(VER)),
        (NONE, "mx1.d.test", REQ, HostPlan(REQ)),
        (ENFORCE, "mx1.d.test", OPP, HostPlan(VER, None, StsMode.ENFORCE)),  # never downgrades
        (ENFORCE, "mx2.d.test", OPP, HostPlan(VER, None, StsMode.ENFORCE, allowed=False)),
        (TESTING, "mx1.d.test", OPP, HostPlan(VER, OPP, StsMode.TESTING)),
        (TESTING, "mx1.d.test", REQ, HostPlan(VER, REQ, StsMode.TESTING)),
        (TESTING, "mx1.d.test", VER, HostPlan(VER, None, StsMode.TESTING)),
        (TESTING, "mx2.d.test", OPP, HostPlan(OPP)),  # counted when the route was screened
        (ENFORCE, "mx1.d.test", OFF, HostPlan(OFF)),  # the operator's explicit choice
    ],
)
def test_host_plan(policy: StsPolicy | None, host: str, tls: TlsPolicy, plan: HostPlan) -> None:
    assert host_plan(policy, host, tls) == plan


def test_the_metric_contract_names_every_result_and_mode() -> None:
    assert tuple(r.value for r in StsResult) == STS_RESULTS
    modes = tuple(m.value for m in StsMode if m is not StsMode.NONE)
    assert (*modes, UNKNOWN_MODE) == STS_MODES
