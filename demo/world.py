"""The demo's internet: dozens of destination domains that behave like real ones.

Responsible for: the plan of destinations (`plan`: name, kind, share of the list) and
bringing it up on tests.support.internet.MiniInternet (one DNS server, one aiosmtpd
receiver per MX host on its own 127.0.0.x).  Kinds:

  accept     takes every message
  big        a quarter of the list; Volley is configured to use at most 4 connections
  greylist   defers each recipient's first attempt (451, `flaky1-`) and some twice
  strict     a list-hygiene problem: about a third of its recipients do not exist (550)
  typo       a misspelt domain that does not exist (NXDOMAIN): bounced at once
  sleepy     its only MX is down for the first seconds, then comes up
  failover   two MX hosts; the preferred one is down for good, the backup takes the mail

A receiver picks what to do from the recipient's local part (tests.support's behaviour
table), so `mail` prefixes local parts for greylisting (`flaky1-`, `flaky2-`) and unknown
users (`permfail-`).  The sender's own domain gets a mailbox too: bounce reports (DSNs)
go there.
Not responsible for: the messages (demo.mail) or Volley (demo.run).
"""

from __future__ import annotations

import enum
import threading
from dataclasses import dataclass

from tests.support.internet import MiniInternet
from tests.support.receiver import Receiver

__all__ = ["SENDER", "Destination", "Kind", "World", "plan"]

SENDER = "news@shop.test"

# Invented provider names; .test is reserved (RFC 2606) and the only TLD the DNS serves.
_NAMES = (
    "alpinemail postbox kestrel-net mailhaven bluewren cobaltpost driftmail ferncloud "
    "granitemail harbourmail inkwell-net juniper-isp larkmail meadowpost northwind-mail "
    "orchardnet pinecone-mail quartzpost riverbend-isp saltmarsh-mail tidewater-net "
    "umbermail valleypost willowmail yarrow-net zephyrmail amberline brookside-isp "
    "cedarpost dunmail eastgate-net foxglove-mail glenmail hollybank-net ivory-isp "
    "jasperpost kelpmail lindenmail moorland-net"
).split()


class Kind(enum.Enum):
    ACCEPT = "accept"
    BIG = "big"
    GREYLIST = "greylist"
    STRICT = "strict"
    TYPO = "typo"
    SLEEPY = "sleepy"
    FAILOVER = "failover"


@dataclass(frozen=True, slots=True)
class Destination:
    domain: str
    kind: Kind
    weight: float  # share of the recipient list, relative to the others


def plan(accepting: int = 36) -> list[Destination]:
    """The destinations: `accepting` ordinary domains (at most len(_NAMES)) plus one or a
    few of every other kind.  Weights fall off like a real list's (a few big providers,
    a long tail)."""
    if not 1 <= accepting <= len(_NAMES):
        raise ValueError(f"accepting must be 1..{len(_NAMES)}")
    out = [Destination("bigmail.test", Kind.BIG, 25.0)]
    out += [
        Destination(f"{n}.test", Kind.ACCEPT, 8.0 / (1 + i / 4))
        for i, n in enumerate(_NAMES[:accepting])
    ]
    out += [Destination(f"greylist{i}.test", Kind.GREYLIST, 3.0) for i in (1, 2, 3)]
    out += [Destination(f"oldlist{i}.test", Kind.STRICT, 2.0) for i in (1, 2)]
    out += [Destination(d, Kind.TYPO, 0.5) for d in ("bigmial.test", "alpinemial.test")]
    out.append(Destination("sleepy.test", Kind.SLEEPY, 2.0))
    out.append(Destination("twomx.test", Kind.FAILOVER, 2.0))
    return out


class World:
    """The destinations of `plan`, up on loopback; `stop()` takes everything down."""

    def __init__(self, destinations: list[Destination], *, outage: float) -> None:
        self.destinations = destinations
        self.outage = outage
        self.net = MiniInternet()
        self.mailboxes: dict[str, list[Receiver]] = {}  # domain -> its MX receivers
        self._wake: threading.Timer | None = None

    def start(self) -> World:
        self.net.start()
        self.mailboxes[SENDER.partition("@")[2]] = self.net.domain(SENDER.partition("@")[2])
        for d in self.destinations:
            if d.kind is Kind.TYPO:
                continue  # not published: NXDOMAIN
            if d.kind is Kind.FAILOVER:
                primary, backup = self.net.domain(d.domain, mx=2, start=False)
                backup.start()  # the preferred MX (10) never comes up
                self.mailboxes[d.domain] = [primary, backup]
            elif d.kind is Kind.SLEEPY:
                (mx,) = self.net.domain(d.domain, start=False)
                self._wake = threading.Timer(self.outage, mx.start)
                self._wake.daemon = True
                self._wake.start()
                self.mailboxes[d.domain] = [mx]
            else:
                self.mailboxes[d.domain] = self.net.domain(d.domain)
        return self

    @property
    def dns(self) -> str:
        return self.net.dns.address

    @property
    def smtp_port(self) -> int:
        return self.net.port

    def received(self) -> dict[str, list[str]]:
        """domain -> the envelope recipients of every message its MX hosts took."""
        return {
            d: [r for rx in rxs for m in rx.messages for r in m.rcpt_tos]
            for d, rxs in self.mailboxes.items()
        }

    def stop(self) -> None:
        if self._wake is not None:
            self._wake.cancel()
            self._wake.join()
        self.net.stop()
