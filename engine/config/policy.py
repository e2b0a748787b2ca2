"""Per-destination limits and retry policy: `[domains.default]` and `[domains."name"]`.

Responsible for: the DomainPolicy value, reading it from a table (a domain's table
inherits every key it does not set from `[domains.default]`), and writing it back.
Not responsible for: enforcing it (engine.sched and engine.runtime do).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from engine.config.values import ConfigError, Table, parse_duration
from engine.model import TlsPolicy
from engine.shaping.gcra import Rate, RateError, parse_rate

__all__ = ["DomainPolicy", "policy_dict", "read_policy"]


@dataclass(frozen=True, slots=True)
class DomainPolicy:
    """Limits and retry policy for one destination domain (`[domains.<name>]`)."""

    max_connections: int = 10
    max_messages_per_connection: int = 100
    max_recipients_per_transaction: int = 100
    # In the spirit of RFC 5321 §4.5.4.1 (retry at least every 30 min, give up after
    # 4-5 days) with Postfix's faster first retries: 5, 10, 20, 40 min, then hourly.
    retry_schedule: tuple[float, ...] = (300.0, 600.0, 1200.0, 2400.0, 3600.0)
    # +-20 %: a recovered domain's backlog comes back spread over a window, not at once.
    retry_jitter: float = 0.2
    max_age: float = 5 * 86400.0
    tls: TlsPolicy = TlsPolicy.OPPORTUNISTIC
    # GCRA limits on the destination's site (engine.shaping.gcra); None: no limit.
    max_message_rate: Rate | None = None
    max_connection_rate: Rate | None = None
    # Share the limits of every domain with the same MX hosts (engine.shaping.sites);
    # false: this domain is a site by itself.
    mx_rollup: bool = True
    # Consult the domain's MTA-STS policy (when dns.mta_sts is on): the per-domain way out
    # of a broken published policy (Mailu #2028: enforce-by-default with no escape).
    mta_sts: bool = True
    # The [egress.pools.NAME] this destination's connections bind from (engine.config.egress);
    # None: its provider's pool, else the pool "default", else smtp.source_address.
    egress_pool: str | None = None


def _rate_text(r: Rate | None) -> str:
    return "" if r is None else f"{r.count:g}/{r.period:g}s"


def policy_dict(p: DomainPolicy) -> dict[str, Any]:
    return {
        "max_connections": p.max_connections,
        "max_messages_per_connection": p.max_messages_per_connection,
        "max_recipients_per_transaction": p.max_recipients_per_transaction,
        "retry_schedule": list(p.retry_schedule),
        "retry_jitter": p.retry_jitter,
        "max_age": p.max_age,
        "tls": p.tls.value,
        "max_message_rate": _rate_text(p.max_message_rate),
        "max_connection_rate": _rate_text(p.max_connection_rate),
        "mx_rollup": p.mx_rollup,
        "mta_sts": p.mta_sts,
        "egress_pool": p.egress_pool or "",
    }


def _rate(t: Table, key: str, base: Rate | None) -> Rate | None:
    raw = t.get(key)
    if raw is None:
        return base
    if not isinstance(raw, str):
        raise ConfigError(f'{t.key(key)}: expected a rate such as "100/s" or "20000/h"')
    if not raw:  # "": no limit (a domain lifting [domains.default]'s)
        return None
    try:
        return parse_rate(raw)
    except RateError as e:
        raise ConfigError(f"{t.key(key)}: {e}") from None


def _pool(t: Table, base: str | None) -> str | None:
    raw = t.get("egress_pool")
    if raw is None:
        return base
    if not isinstance(raw, str):
        raise ConfigError(f'{t.key("egress_pool")}: expected a pool name such as "gmail"')
    return raw or None  # "": none of its own (a domain lifting [domains.default]'s)


def read_policy(t: Table, base: DomainPolicy) -> DomainPolicy:
    sched = t.get("retry_schedule")
    schedule = base.retry_schedule
    if sched is not None:
        if not isinstance(sched, list) or not sched:
            raise ConfigError(f"{t.key('retry_schedule')}: expected a non-empty list of durations")
        schedule = tuple(parse_duration(v, t.key("retry_schedule")) for v in sched)
    tls_raw = t.string("tls", base.tls.value)
    try:
        tls = TlsPolicy(tls_raw)
    except ValueError:
        choices = ", ".join(p.value for p in TlsPolicy)
        raise ConfigError(f"{t.key('tls')}: expected one of {choices}; got {tls_raw!r}") from None
    jitter = t.number("retry_jitter", base.retry_jitter)
    if jitter >= 1:
        raise ConfigError(f"{t.key('retry_jitter')}: must be below 1")
    policy = replace(
        base,
        max_connections=t.integer("max_connections", base.max_connections, 1),
        max_messages_per_connection=t.integer(
            "max_messages_per_connection", base.max_messages_per_connection, 1
        ),
        max_recipients_per_transaction=t.integer(
            "max_recipients_per_transaction", base.max_recipients_per_transaction, 1
        ),
        retry_schedule=schedule,
        retry_jitter=jitter,
        max_age=t.duration("max_age", base.max_age),
        tls=tls,
        max_message_rate=_rate(t, "max_message_rate", base.max_message_rate),
        max_connection_rate=_rate(t, "max_connection_rate", base.max_connection_rate),
        mx_rollup=t.boolean("mx_rollup", base.mx_rollup),
        mta_sts=t.boolean("mta_sts", base.mta_sts),
        egress_pool=_pool(t, base.egress_pool),
    )
    t.finish()
    return policy
