"""A worker's side of adaptive shaping: what its receivers said, and what is in force.

Responsible for: gathering, per site, the messages delivered, the connections let in and
the non-2xx replies (transaction replies from recipient outcomes, refusals from failed
connections) and sending them to the supervisor as one "shaping" report per site at each
flush (four a second), with the seconds it covers; counting throttling replies
(`volley_throttling_replies_total{stage}`); and keeping the table of limits in force the
supervisor broadcasts ("shaping_limits": per site or provider, connections, rate,
suspended until, bouncing until), which engine.runtime.sites applies to every new
connection.
Not responsible for: deciding anything (the supervisor's engine.shaping.adaptive.Shaper)
or acting on a suspension (engine.runtime.delivery pauses the destination).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from engine.model import ConnectFailure, Disposition, Origin, RecipientOutcome
from engine.shaping.limits import SiteLimits
from engine.shaping.replies import ReplySample, Stage, shipped_throttling
from engine.shaping.sites import Site
from engine.telemetry.metrics import Tally

__all__ = ["InForce", "ShapingFeed"]

# Replies kept per site per report.  AIMD needs the share of throttling replies in a
# window, so beyond this the rest are summarised by count (a site answering 1 000
# replies a second to one worker would otherwise make one report 100 KB).
MAX_SAMPLES = 200
_TEXT = 200  # characters of reply text kept: rules match the start of replies


@dataclass(frozen=True, slots=True)
class InForce:
    """What the supervisor has in force for a site or provider."""

    connections: int | None
    rate: float | None  # messages per second
    suspended_until: float | None  # wall time
    bouncing_until: float | None


@dataclass(slots=True)
class _Pending:
    site: Site
    ceiling: SiteLimits
    delivered: int = 0
    opened: int = 0
    samples: list[list[Any]] = field(default_factory=list)


class ShapingFeed:
    def __init__(self, send: Callable[..., None], tally: Tally) -> None:
        self._send = send
        self._tally = tally
        self._throttling = shipped_throttling()
        self._pending: dict[str, _Pending] = {}
        self._in_force: dict[str, InForce] = {}
        self._flushed_at: float | None = None  # monotonic time of the last flush
        self.version = 0  # one more per table received: live connections re-read it

    # -- reports ------------------------------------------------------------------------
    def outcomes(
        self, site: Site, ceiling: SiteLimits, outcomes: Sequence[RecipientOutcome]
    ) -> None:
        p = self._pending_for(site, ceiling)
        for o in outcomes:
            if o.disposition is Disposition.DELIVERED:
                p.delivered += 1
            elif o.origin is Origin.REPLY:
                self._sample(p, o.code, o.enhanced, o.text, Stage.TRANSACTION)

    def opened(self, site: Site, ceiling: SiteLimits) -> None:
        """A connection the site let in: refusals are judged against connections tried."""
        self._pending_for(site, ceiling).opened += 1

    def refused(self, site: Site, ceiling: SiteLimits, failure: ConnectFailure) -> None:
        """A connection the site refused with a reply (a 421 greeting, EHLO refused)."""
        reply = failure.reply
        if reply is None:
            return
        p = self._pending_for(site, ceiling)
        self._sample(p, reply.code, reply.enhanced, reply.text, Stage.CONNECT)

    def flush(self, now: float) -> None:
        """Send the reports; `now` (monotonic) dates them: each says how many seconds
        it covers, so the supervisor's first window of a site starts when its first
        deliveries did, not when their report came (a report that waited on a busy
        start-up made a receiver taking 200/s look like 248/s)."""
        span = 0.0 if self._flushed_at is None else now - self._flushed_at
        self._flushed_at = now
        for name, p in self._pending.items():
            rate = p.ceiling.message_rate
            self._send(
                "shaping",
                name,
                p.site.provider,
                p.ceiling.max_connections,
                None if rate is None else rate.per_second,
                p.delivered,
                p.samples,
                p.opened,
                round(span, 3),
            )
        self._pending.clear()

    def _pending_for(self, site: Site, ceiling: SiteLimits) -> _Pending:
        p = self._pending.get(site.name)
        if p is None:
            p = self._pending[site.name] = _Pending(site, ceiling)
        return p

    def _sample(
        self, p: _Pending, code: int, enhanced: str | None, text: str, stage: Stage
    ) -> None:
        enhanced = enhanced or None
        if enhanced and text.startswith(enhanced):  # Reply.text starts with the code
            text = text[len(enhanced) :].lstrip()
        sample = ReplySample(code, enhanced, text[:_TEXT], stage)
        if self._throttling.is_throttling(sample):
            self._tally.inc("volley_throttling_replies", stage.value)
        if len(p.samples) < MAX_SAMPLES:
            p.samples.append([code, sample.enhanced, sample.text, stage.value])

    # -- what is in force ----------------------------------------------------------------
    def apply(self, table: dict[str, list[Any]]) -> None:
        """The supervisor's whole table (it sends it whole on every change)."""
        self.version += 1
        self._in_force = {
            key: InForce(
                None if c is None else int(c),
                None if r is None else float(r),
                None if s is None else float(s),
                None if b is None else float(b),
            )
            for key, (c, r, s, b) in table.items()
        }

    def in_force(self, site: Site) -> list[InForce]:
        """What applies to `site`: its own entry and its provider's."""
        out = []
        own = self._in_force.get(site.name)
        if own is not None:
            out.append(own)
        if site.provider is not None:
            theirs = self._in_force.get(f"provider:{site.provider}")
            if theirs is not None:
                out.append(theirs)
        return out
