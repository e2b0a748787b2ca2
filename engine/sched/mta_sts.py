"""MTA-STS (RFC 8461) decisions: parse the TXT record and the policy, match MX hosts,
judge a cached policy, and say what a route and a connection must do under a policy.

Responsible for:
  * `parse_record`: the `_mta-sts.<domain>` TXT strings -> the policy id (§3.1: exactly
    one record starting "v=STSv1;", with a valid `id`), or why there is none.
  * `parse_policy`: the policy file's text -> `StsPolicy` or `PolicyInvalid` (§3.2).
    Unknown fields are ignored, as §3.2 requires; a line that is not `name: value`, a
    field of ours with a bad value, a missing required field (`nmx: ...` in place of
    `mx:` leaves an enforce policy without `mx`) or a conflicting duplicate invalidates
    the whole policy: it is never half-applied (postfix-tlspol #95).  `mx:` values that
    are IP addresses are skipped, never matched (postfix-tlspol #70): an MX host is a name.
  * `mx_matches` (§4.1: a wildcard covers exactly one leftmost label).
  * `next_step` / `CachedPolicy`: whether to use the cached policy, fetch, or apply none
    (§3.3: a new id means refetch; a valid cached policy applies when DNS or HTTPS fail;
    a failed fetch is retried no sooner than RETRY_AFTER; a policy is refreshed once past
    half its max_age, so an attacker blocking the fetch at expiry finds a fresh one).
  * `screen_hosts` and `host_plan`: which MX hosts a route keeps, and the TLS policy a
    connection to one of them uses (enforce: verified TLS, no fallback; testing: verified
    first, then the domain's own policy, the failure only counted).
Not responsible for: DNS, HTTPS, the persistent cache (engine.net.sts and its helpers),
counting, or building routes (engine.runtime.tlsguard).  Pure: `now` is a parameter.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from engine.model import TlsPolicy

__all__ = [
    "MAX_AGE",
    "RETRY_AFTER",
    "CachedPolicy",
    "HostPlan",
    "NoRecord",
    "PolicyInvalid",
    "Screen",
    "Step",
    "StsMode",
    "StsPolicy",
    "StsRecord",
    "StsResult",
    "host_plan",
    "mx_matches",
    "next_step",
    "parse_policy",
    "parse_record",
    "screen_hosts",
]

MAX_AGE = 31_557_600  # §3.2: max_age's maximum (one year); larger values are clamped
RETRY_AFTER = 300.0  # §3.3: a failed fetch is retried after five minutes or longer

_EXT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}")  # sts(-policy)-ext-name
_ID = re.compile(r"[A-Za-z0-9]{1,32}")
_EXT_VALUE = re.compile(r"[\x21-\x3a\x3c\x3e-\x7e]+")  # sts-ext-value: no "=", no ";"
_RECORD_START = re.compile(r"v=STSv1[ \t]*;")
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_MAX_AGE_VALUE = re.compile(r"[0-9]{1,10}")


class StsMode(enum.Enum):
    ENFORCE = "enforce"  # deliver only to listed MX hosts over verified TLS
    TESTING = "testing"  # deliver as usual; count what enforce would have refused
    NONE = "none"  # as if the domain had no policy (how a domain withdraws one)


class StsResult(enum.Enum):
    """TLSRPT-like results (RFC 8460 §4.3), volley_mta_sts_results_total{result}."""

    SUCCESS = "success"  # a verified TLS session to a listed MX host
    POLICY_FETCH_ERROR = "policy_fetch_error"  # a TXT record, but no policy came over HTTPS
    POLICY_INVALID = "policy_invalid"  # the policy file fetched does not parse
    MX_MISMATCH = "mx_mismatch"  # an MX host the policy does not list
    CERT_INVALID = "cert_invalid"  # the certificate did not verify for the MX host name
    STARTTLS_MISSING = "starttls_missing"  # STARTTLS not offered or refused
    HANDSHAKE_FAILED = "handshake_failed"  # TLS failed otherwise


@dataclass(frozen=True, slots=True)
class StsRecord:
    id: str


@dataclass(frozen=True, slots=True)
class NoRecord:
    detail: str


@dataclass(frozen=True, slots=True)
class StsPolicy:
    mode: StsMode
    mx: tuple[str, ...]  # lower-case patterns: "mail.example.com", "*.example.net"
    max_age: int  # seconds, at most MAX_AGE

    def allows(self, host: str) -> bool:
        """Whether MX host `host` matches one of the policy's patterns."""
        return any(mx_matches(p, host) for p in self.mx)


@dataclass(frozen=True, slots=True)
class PolicyInvalid:
    detail: str


# -- parsing ----------------------------------------------------------------------------------


def parse_record(texts: Sequence[str]) -> StsRecord | NoRecord:
    """The policy id from the TXT records of `_mta-sts.<domain>` (each record's strings
    already joined).  §3.1: records not starting "v=STSv1;" are discarded; anything but
    exactly one left, or one that is not valid, means no policy."""
    sts = [t for t in texts if _RECORD_START.match(t)]
    if len(sts) != 1:
        return NoRecord("no MTA-STS TXT record" if not sts else f"{len(sts)} MTA-STS records")
    fields = [f.strip(" \t") for f in sts[0].split(";")]
    if fields and not fields[-1]:
        fields.pop()  # the optional trailing delimiter
    policy_id: str | None = None
    for field in fields[1:]:
        name, eq, value = field.partition("=")
        if not eq or not _EXT_NAME.fullmatch(name) or not _EXT_VALUE.fullmatch(value):
            return NoRecord(f"malformed MTA-STS record field {field!r}")
        if name == "id" and policy_id is None:
            if not _ID.fullmatch(value):
                return NoRecord(f"malformed MTA-STS id {value!r}")
            policy_id = value
    if policy_id is None:
        return NoRecord("MTA-STS record without id")
    return StsRecord(policy_id)


def parse_policy(text: str) -> StsPolicy | PolicyInvalid:
    """Parse a policy file (§3.2); see the module docstring for what invalidates it."""
    text = text.removeprefix("\ufeff")
    single: dict[str, str] = {}
    patterns: list[str] = []
    mx_lines = 0
    for number, raw in enumerate(text.split("\n"), 1):
        line = raw.removesuffix("\r")
        if not line.strip(" \t"):
            continue  # blank lines carry nothing (not in the ABNF, harmless, seen in use)
        name, colon, value = line.partition(":")
        value = value.strip(" \t")
        if not colon or not _EXT_NAME.fullmatch(name) or not value:
            return PolicyInvalid(f"line {number} is not 'name: value': {line[:80]!r}")
        if name == "mx":
            mx_lines += 1
            pattern = _mx_pattern(value)
            if pattern is None:
                return PolicyInvalid(f"line {number}: invalid mx pattern {value[:80]!r}")
            if pattern:
                patterns.append(pattern)
        elif name in ("version", "mode", "max_age"):
            if single.setdefault(name, value) != value:
                return PolicyInvalid(f"line {number}: {name} given twice, differently")
        # Any other name is an extension field: ignored (§3.2).
    if single.get("version") != "STSv1":
        return PolicyInvalid(f"version is {single.get('version')!r}, not 'STSv1'")
    try:
        mode = StsMode(single.get("mode", ""))
    except ValueError:
        return PolicyInvalid(f"mode is {single.get('mode')!r}, not enforce|testing|none")
    age = single.get("max_age", "")
    if not _MAX_AGE_VALUE.fullmatch(age):
        return PolicyInvalid(f"max_age is {age!r}, not 1-10 digits")
    if not mx_lines and mode is not StsMode.NONE:
        return PolicyInvalid(f"mode {mode.value} without any mx line")
    return StsPolicy(mode, tuple(dict.fromkeys(patterns)), min(int(age), MAX_AGE))


def _mx_pattern(value: str) -> str | None:
    """The normalised pattern; "" for an IP address (skipped); None when invalid:
    `["*."] Domain` with the wildcard only as the whole leftmost label."""
    bare = value[1:-1] if value.startswith("[") and value.endswith("]") else value
    try:
        ipaddress.ip_address(bare)
        return ""
    except ValueError:
        pass
    name = value.lower().removesuffix(".")
    labels = name.split(".")
    if labels[0] == "*":
        labels = labels[1:]
    if not labels or len(name) > 253 or not all(_LABEL.fullmatch(lb) for lb in labels):
        return None
    return name


def mx_matches(pattern: str, host: str) -> bool:
    """§4.1: `host` equals `pattern`, or `pattern` is "*.suffix" and `host` is exactly one
    label followed by ".suffix" (so "*.example.com" matches neither "example.com" nor
    "a.b.example.com").  Case and a trailing dot of `host` are ignored."""
    host = host.lower().removesuffix(".")
    if pattern.startswith("*."):
        first, dot, rest = host.partition(".")
        return bool(first) and bool(dot) and rest == pattern[2:]
    return host == pattern


# -- the cache --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CachedPolicy:
    """A policy as fetched: under which TXT id, and when (wall-clock seconds)."""

    policy_id: str
    policy: StsPolicy
    fetched_at: float

    @property
    def expires_at(self) -> float:
        return self.fetched_at + self.policy.max_age

    def is_valid(self, now: float) -> bool:
        """§3.3: a policy is good for max_age seconds after its fetch."""
        return now < self.expires_at

    def wants_refresh(self, now: float) -> bool:
        """Past half its lifetime: fetch again before it expires (§10.2's advice against
        attacks at refresh time), keeping it meanwhile."""
        return now >= self.fetched_at + self.policy.max_age / 2


class Step(enum.Enum):
    USE_CACHED = "use_cached"
    FETCH = "fetch"
    NO_POLICY = "no_policy"


def next_step(
    cached: CachedPolicy | None,
    record: StsRecord | None,
    failed_at: float | None,
    now: float,
) -> Step:
    """What to do for a domain now.

    Args:
        cached: the policy cached for the domain, valid or not.
        record: the TXT record now, or None when there is none or DNS failed: §3.3 keeps a
            valid cached policy then (withdrawing one takes `mode: none` under a new id).
        failed_at: when a fetch for `record.id` last failed, if it did.
        now: wall-clock seconds.
    Returns:
        FETCH means: fetch, and if that fails, `next_step(cached, None, ...)` decides.
    """
    valid = cached is not None and cached.is_valid(now)
    if record is not None:
        may_fetch = failed_at is None or now - failed_at >= RETRY_AFTER
        current = valid and cached is not None and cached.policy_id == record.id
        if may_fetch and (not current or (cached is not None and cached.wants_refresh(now))):
            return Step.FETCH
    return Step.USE_CACHED if valid else Step.NO_POLICY


# -- routes and connections ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Screen:
    """MX hosts split by a policy: `kept` in their order, `mismatched` not listed."""

    kept: tuple[str, ...]
    mismatched: tuple[str, ...]


def screen_hosts(policy: StsPolicy, hosts: Iterable[str]) -> Screen:
    """Which MX hosts a route keeps: under enforce only the listed ones (§5.1: never
    deliver to a host that fails MX matching); under testing all (the mismatched ones are
    only counted)."""
    kept: list[str] = []
    mismatched: list[str] = []
    for host in hosts:
        if policy.allows(host):
            kept.append(host)
        else:
            mismatched.append(host)
            if policy.mode is not StsMode.ENFORCE:
                kept.append(host)
    return Screen(tuple(kept), tuple(mismatched))


@dataclass(frozen=True, slots=True)
class HostPlan:
    """How to open a connection to one MX host.

    `tls` for the attempt; when it fails on TLS and `fallback` is set, open again with
    `fallback` (testing mode: deliver as usual).  `mode` labels the results (None: no
    MTA-STS policy applies to this connection, count nothing).  `allowed` False: the host
    is not in an enforced policy (the route was screened under an older one): do not
    connect.
    """

    tls: TlsPolicy
    fallback: TlsPolicy | None = None
    mode: StsMode | None = None
    allowed: bool = True


def host_plan(policy: StsPolicy | None, host: str, tls: TlsPolicy) -> HostPlan:
    """The plan for `host` under `policy`, given the domain's own `tls` setting.

    An explicit `tls = "disabled"` for the domain is the operator's choice and wins
    (MTA-STS is then not consulted at all: engine.runtime.tlsguard)."""
    if policy is None or policy.mode is StsMode.NONE or tls is TlsPolicy.DISABLED:
        return HostPlan(tls)
    listed = policy.allows(host)
    if policy.mode is StsMode.ENFORCE:
        return HostPlan(TlsPolicy.VERIFY, None, StsMode.ENFORCE, listed)
    if not listed:  # testing: counted as mx_mismatch when the route was screened
        return HostPlan(tls)
    fallback = None if tls is TlsPolicy.VERIFY else tls
    return HostPlan(TlsPolicy.VERIFY, fallback, StsMode.TESTING)
