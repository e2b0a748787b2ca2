"""Typed configuration: TOML file + command-line overrides -> frozen `Settings`.

Responsible for: every setting's name, type and default; rejecting unknown keys with
the key's dotted name; per-destination policy lookup (`Settings.policy(domain)`).
Sections with many keys of their own live beside it (engine.config.policy, .smtpd,
.dkim, .bounce, .routes).
Not responsible for: acting on settings (the runtime does), or reading any file but
the one TOML file it is given (and, through those sections, the files it names).

Every key has a default, so `volley run` works with no file at all.
"""

from __future__ import annotations

import os
import socket
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from engine.config.bounce import BounceSettings, bounce_dict, read_bounce
from engine.config.dkim import DkimDomain, dkim_dict, read_dkim
from engine.config.egress import EgressSettings, check_pool_names, egress_dict, read_egress
from engine.config.helo import helo_name_error
from engine.config.policy import DomainPolicy, policy_dict, read_policy
from engine.config.providers import providers_dict, read_provider_tables
from engine.config.routes import Routes, read_routes, routes_dict
from engine.config.shaping import ShapingSettings, read_shaping, shaping_dict
from engine.config.smtpd import SmtpdSettings, read_smtpd, smtpd_dict
from engine.config.suppress import (
    SuppressionSettings,
    UnsubscribeSettings,
    read_suppression,
    read_unsubscribe,
    suppression_dict,
    unsubscribe_dict,
)
from engine.config.values import ConfigError, Table, check_ca_file, check_listen, parse_address
from engine.model import SmtpTimeouts
from engine.shaping.providers import Provider, shipped_providers

__all__ = ["Settings", "from_dict", "load_settings"]

# Addresses that are never a real remote MX host (Exim's ignore_target_hosts, Postfix's
# smtp "mail for X loops back to myself" check): "this network", loopback, link-local,
# multicast, broadcast and unspecified.  An MX record pointing at them is a mistake or
# an attack (making us connect to our own or our neighbours' services).
IGNORE_TARGET_HOSTS = (
    "0.0.0.0/8",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "224.0.0.0/4",
    "255.255.255.255/32",
    "::/128",
    "::1/128",
    "fe80::/10",
    "ff00::/8",
)


@dataclass(frozen=True, slots=True)
class Settings:
    spool_path: Path = Path("var/spool")
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    max_message_size: int = 50 * 1024 * 1024
    max_recipients: int = 1000
    # Seconds between looks at an empty incoming/: a stat, a listing when its mtime moved
    # (and at least every second: engine.runtime.intake.Pickup.idle).
    intake_interval: float = 0.05
    intake_batch: int = 256  # drops taken per group commit
    dns_nameservers: tuple[str, ...] | None = None  # None: the system resolver
    dns_timeout: float = 5.0
    dns_negative_ttl: float = 300.0
    # MTA-STS (RFC 8461, engine.net.sts): fetch and apply the policies domains publish.
    mta_sts: bool = True
    mta_sts_port: int = 443  # the policy host's HTTPS port; only tests and labs change it
    smtp_port: int = 25
    helo_name: str = field(default_factory=socket.getfqdn)
    source_address: str | None = None
    # CA certificates (PEM) that verified TLS trusts instead of the system store: tls =
    # "verify" and MTA-STS sessions, and the MTA-STS policy fetch.  None: the system's.
    tls_ca_file: Path | None = None
    # Networks whose addresses are never connected to (see IGNORE_TARGET_HOSTS); tests
    # on loopback set [].
    ignore_target_hosts: tuple[str, ...] = IGNORE_TARGET_HOSTS
    # MX answers are untrusted input: at most this many MX hosts' addresses are tried per
    # destination (Postfix's smtp_mx_address_limit, default 5) ...
    mx_address_limit: int = 5
    # ... and at most this many of them get a connection attempt per delivery attempt
    # before the destination is deferred (Postfix's smtp_mx_session_limit, default 2).
    mx_session_limit: int = 2
    # A connection's whole life: no transaction starts after it, and a transaction in
    # progress still has its phase deadlines.  Postfix's smtp_connection_reuse_time_limit
    # is 300 s; 15 min keeps long-lived reuse to a slow receiver.
    max_connection_lifetime: float = 900.0
    smtp_timeouts: SmtpTimeouts = field(default_factory=SmtpTimeouts)
    # Transactions in flight per connection (RFC 2920 across transactions): 2 lets the
    # next message's MAIL/RCPT/DATA leave with the previous one's content, one round trip
    # and one write per message instead of two; more gains nothing (each content waits
    # for its own 354) and raises the kill -9 resend bound, depth x open connections
    # (README, Guarantees).  1: one transaction at a time.  Measured in bench/README.md.
    pipeline_depth: int = 2
    idle_timeout: float = 5.0  # an unused pooled connection is closed after this long
    metrics_listen: str = "127.0.0.1:9108"
    # Per-destination series only for the N busiest domains; the rest are summed under
    # domain="other" so /metrics stays bounded with 100 000 destinations.
    metrics_top_domains: int = 50
    log_path: Path = Path("var/log/delivery.jsonl")
    # The admin API (engine.admin); "" turns it off.  Loopback: see README before widening.
    admin_listen: str = "127.0.0.1:9109"
    admin_token_file: Path | None = None  # None: <spool>/admin.token
    dsn_enabled: bool = True
    # A message's bounce report waits this long for the failures of its other destination
    # domains (one entry each), so the sender gets one report listing every failed
    # recipient; siblings usually fail within seconds of each other (engine.runtime.outcome).
    dsn_hold: float = 30.0
    bounce: BounceSettings = field(default_factory=BounceSettings)
    drain_timeout: float = 30.0
    smtpd: SmtpdSettings = field(default_factory=SmtpdSettings)
    dkim: tuple[DkimDomain, ...] = ()
    suppression: SuppressionSettings = field(default_factory=SuppressionSettings)
    unsubscribe: UnsubscribeSettings | None = None  # None: [unsubscribe] is not configured
    default_policy: DomainPolicy = field(default_factory=DomainPolicy)
    domain_policies: Mapping[str, DomainPolicy] = field(default_factory=dict)
    routes: Routes = field(default_factory=Routes)  # [routes]: smarthosts (engine.config.routes)
    # The shipped providers (engine/shaping/providers.toml) with [providers.NAME] applied.
    providers: tuple[Provider, ...] = field(
        default_factory=lambda: tuple(shipped_providers().values())
    )
    shaping: ShapingSettings = field(default_factory=ShapingSettings)
    egress: EgressSettings = field(default_factory=EgressSettings)  # [egress]: source IP pools

    def policy(self, domain: str) -> DomainPolicy:
        return self.domain_policies.get(domain, self.default_policy)

    @property
    def admin_token_path(self) -> Path:
        return self.admin_token_file or self.spool_path / "admin.token"

    @property
    def unsubscribe_secret_path(self) -> Path:
        u = self.unsubscribe
        return (u.secret_file if u else None) or self.spool_path / "unsubscribe.key"

    def to_dict(self) -> dict[str, Any]:
        """A plain TOML-shaped dict that `from_dict` reads back (sent to workers)."""
        out: dict[str, Any] = {
            "spool": {
                "path": str(self.spool_path),
                "max_message_size": self.max_message_size,
                "max_recipients": self.max_recipients,
            },
            "workers": self.workers,
            "intake": {"interval": self.intake_interval, "batch": self.intake_batch},
            "dns": {
                "timeout": self.dns_timeout,
                "negative_ttl": self.dns_negative_ttl,
                "mta_sts": self.mta_sts,
                "mta_sts_port": self.mta_sts_port,
            },
            "smtp": {
                "port": self.smtp_port,
                "helo_name": self.helo_name,
                "idle_timeout": self.idle_timeout,
                "ignore_target_hosts": list(self.ignore_target_hosts),
                "mx_address_limit": self.mx_address_limit,
                "mx_session_limit": self.mx_session_limit,
                "max_connection_lifetime": self.max_connection_lifetime,
                "pipeline_depth": self.pipeline_depth,
                "timeouts": {
                    f.name: getattr(self.smtp_timeouts, f.name) for f in fields(SmtpTimeouts)
                },
            },
            "metrics": {"listen": self.metrics_listen, "top_domains": self.metrics_top_domains},
            "log": {"path": str(self.log_path)},
            "admin": {"listen": self.admin_listen},
            "dsn": {"enabled": self.dsn_enabled, "hold": self.dsn_hold},
            "bounce": bounce_dict(self.bounce),
            "smtpd": smtpd_dict(self.smtpd),
            "dkim": dkim_dict(self.dkim),
            "suppression": suppression_dict(self.suppression),
            "unsubscribe": unsubscribe_dict(self.unsubscribe),
            "shutdown": {"drain_timeout": self.drain_timeout},
            "providers": providers_dict(self.providers),
            "shaping": shaping_dict(self.shaping),
            "egress": egress_dict(self.egress),
            "domains": {"default": policy_dict(self.default_policy)}
            | {name: policy_dict(p) for name, p in self.domain_policies.items()},
            "routes": routes_dict(self.routes),
        }
        if self.dns_nameservers is not None:
            out["dns"]["nameservers"] = list(self.dns_nameservers)
        if self.source_address is not None:
            out["smtp"]["source_address"] = self.source_address
        if self.tls_ca_file is not None:
            out["smtp"]["tls_ca_file"] = str(self.tls_ca_file)
        if self.admin_token_file is not None:
            out["admin"]["token_file"] = str(self.admin_token_file)
        return out


def from_dict(data: Mapping[str, Any]) -> Settings:
    """Build Settings from a TOML-shaped dict; unknown keys raise ConfigError."""
    d = Settings()
    root = Table(data, "")
    sp = root.table("spool")
    spool_path = Path(sp.string("path", str(d.spool_path)) or d.spool_path)
    max_size = sp.integer("max_message_size", d.max_message_size, 1)
    max_rcpts = sp.integer("max_recipients", d.max_recipients, 1)
    sp.finish()
    workers = root.integer("workers", d.workers, 1)
    it = root.table("intake")
    intake_interval = it.duration("interval", d.intake_interval)
    intake_batch = it.integer("batch", d.intake_batch, 1)
    it.finish()
    dn = root.table("dns")
    ns_raw = dn.get("nameservers")
    nameservers: tuple[str, ...] | None = None
    if ns_raw is not None:
        if not isinstance(ns_raw, list) or not all(isinstance(s, str) and s for s in ns_raw):
            raise ConfigError('dns.nameservers: expected a list of "ip" or "ip:port" strings')
        for entry in ns_raw:
            try:
                parse_address(entry, default_port=53)
            except ValueError as e:
                raise ConfigError(f"dns.nameservers: {e}") from None
        nameservers = tuple(ns_raw) or None
    dns_timeout = dn.duration("timeout", d.dns_timeout)
    negative_ttl = dn.duration("negative_ttl", d.dns_negative_ttl)
    mta_sts = dn.boolean("mta_sts", d.mta_sts)
    mta_sts_port = dn.integer("mta_sts_port", d.mta_sts_port, 1)
    if mta_sts_port > 65535:
        raise ConfigError("dns.mta_sts_port: must be at most 65535")
    dn.finish()
    sm = root.table("smtp")
    port = sm.integer("port", d.smtp_port, 1)
    if port > 65535:
        raise ConfigError("smtp.port: must be at most 65535")
    helo = sm.string("helo_name", None) or d.helo_name
    why = helo_name_error(helo)
    if why is not None:
        raise ConfigError(f"smtp.helo_name: {helo!r} {why}")
    source = sm.string("source_address", None)
    idle = sm.duration("idle_timeout", d.idle_timeout)
    ignore = sm.networks("ignore_target_hosts", d.ignore_target_hosts)
    mx_address_limit = sm.integer("mx_address_limit", d.mx_address_limit, 1)
    mx_session_limit = sm.integer("mx_session_limit", d.mx_session_limit, 1)
    ca_file = check_ca_file("smtp.tls_ca_file", sm.path("tls_ca_file"))
    lifetime = sm.duration("max_connection_lifetime", d.max_connection_lifetime)
    if lifetime <= 0:
        raise ConfigError("smtp.max_connection_lifetime: must be above 0")
    pipeline_depth = sm.integer("pipeline_depth", d.pipeline_depth, 1)
    tt = sm.table("timeouts")
    timeouts = SmtpTimeouts(
        **{
            f.name: tt.duration(f.name, getattr(d.smtp_timeouts, f.name))
            for f in fields(SmtpTimeouts)
        }
    )
    tt.finish()
    sm.finish()
    me = root.table("metrics")
    listen = check_listen("metrics.listen", me.get("listen"), d.metrics_listen, may_be_off=False)
    top_domains = me.integer("top_domains", d.metrics_top_domains, 1)
    me.finish()
    lg = root.table("log")
    log_path = Path(lg.string("path", str(d.log_path)) or d.log_path)
    lg.finish()
    ad = root.table("admin")
    admin_listen = check_listen("admin.listen", ad.get("listen"), d.admin_listen, may_be_off=True)
    token_raw = ad.string("token_file", None)
    ad.finish()
    smtpd = read_smtpd(root.table("smtpd"))
    dkim = read_dkim(root.table("dkim"))
    suppression = read_suppression(root.table("suppression"))
    unsubscribe = read_unsubscribe(root.table("unsubscribe"))
    ds = root.table("dsn")
    dsn_enabled = ds.boolean("enabled", d.dsn_enabled)
    dsn_hold = ds.duration("hold", d.dsn_hold)
    ds.finish()
    bounce = read_bounce(root.table("bounce"))
    sh = root.table("shutdown")
    drain = sh.duration("drain_timeout", d.drain_timeout)
    sh.finish()
    providers = read_provider_tables(root.table("providers"))
    shaping = read_shaping(root.table("shaping"))
    domains = root.table("domains")
    default_policy = read_policy(domains.table("default"), DomainPolicy())
    per_domain: dict[str, DomainPolicy] = {}
    for name in domains.data:
        if name == "default":
            continue
        per_domain[name.lower().rstrip(".")] = read_policy(domains.table(name), default_policy)
    domains.finish()
    routes = read_routes(root.table("routes"), smtpd)
    egress = read_egress(root.table("egress"))
    check_pool_names(
        egress,
        [("domains.default.egress_pool", default_policy.egress_pool)]
        + [(f"domains.{n}.egress_pool", p.egress_pool) for n, p in per_domain.items()]
        + [(f"providers.{p.name}.egress_pool", p.egress_pool) for p in providers],
    )
    root.finish()
    return Settings(
        spool_path=spool_path,
        workers=workers,
        max_message_size=max_size,
        max_recipients=max_rcpts,
        intake_interval=intake_interval,
        intake_batch=intake_batch,
        dns_nameservers=nameservers,
        dns_timeout=dns_timeout,
        dns_negative_ttl=negative_ttl,
        mta_sts=mta_sts,
        mta_sts_port=mta_sts_port,
        smtp_port=port,
        helo_name=helo,
        source_address=source,
        tls_ca_file=ca_file,
        ignore_target_hosts=ignore,
        mx_address_limit=mx_address_limit,
        mx_session_limit=mx_session_limit,
        max_connection_lifetime=lifetime,
        pipeline_depth=pipeline_depth,
        smtp_timeouts=timeouts,
        idle_timeout=idle,
        metrics_listen=listen,
        metrics_top_domains=top_domains,
        log_path=log_path,
        admin_listen=admin_listen,
        admin_token_file=None if token_raw is None else Path(token_raw),
        smtpd=smtpd,
        dkim=dkim,
        suppression=suppression,
        unsubscribe=unsubscribe,
        dsn_enabled=dsn_enabled,
        dsn_hold=dsn_hold,
        bounce=bounce,
        drain_timeout=drain,
        default_policy=default_policy,
        domain_policies=per_domain,
        routes=routes,
        providers=providers,
        shaping=shaping,
        egress=egress,
    )


def load_settings(
    path: str | os.PathLike[str] | None = None, overrides: Mapping[str, Any] | None = None
) -> Settings:
    """Read the TOML file (if any), apply command-line overrides, validate.

    `overrides` uses dotted keys as on the command line, e.g. {"spool.path": "/x"}.
    """
    data: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except OSError as e:
            raise ConfigError(f"cannot read config file {path}: {e.strerror}") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"config file {path}: {e}") from None
    for dotted, value in (overrides or {}).items():
        node = data
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return from_dict(data)
