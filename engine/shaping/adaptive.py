"""The supervisor's adaptive shaper: replies in, limits and the changes to log out.

Responsible for: `Shaper`, the one owner of adaptive shaping state while Volley runs
(the supervisor; workers report to it).  It classifies the replies a worker reports
(engine.shaping.replies), counts rule matches against their triggers and applies rule
actions for their durations (engine.shaping.rules), runs the AIMD controller per site
(engine.shaping.aimd), answers the limits in force for a site (`effective`), saves what
changed (engine.shaping.store) and describes every change (`Change`, `record`).
Not responsible for: enforcing limits (the arbiter's leases and token batches), bouncing
mail (a BOUNCE change asks the supervisor to), which site or provider a domain belongs
to (engine.shaping.sites), or reading the clock: every method takes `now`, wall-clock
seconds, because rule actions end at a wall-clock time that must survive a restart.

The limits in force for a site: the lowest of its maximum (`Ceiling`), its AIMD limits
and every reduction in force on the site or its provider; then never below the floors
(`floor_connections`, `floor_rate`), and never above the maximum.  A suspension of the
site or of its provider stops it until the later of their ends.

A change is reported once, when something changed: AIMD at most once per window per
site; a rule when it fires, and again only when a new match pushes its end at least a
quarter of its duration further (so a receiver repeating itself every second writes a
few records per rule duration, not one per reply); its end once.
"""

from __future__ import annotations

import collections
import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from engine.config.shaping import ShapingSettings
from engine.shaping.aimd import AimdState, Ceiling, Verdict, Window, judge
from engine.shaping.replies import ReplySample, Stage, reply_line, shipped_throttling
from engine.shaping.rules import Action, Rule, Scope
from engine.shaping.store import ActiveAction, ShapingStore, SiteState

__all__ = [
    "FORGET_AFTER",
    "Ceiling",
    "Change",
    "ChangeKind",
    "Effective",
    "ReplySample",
    "Shaper",
    "Stage",
]

# Learned limits unchanged for a week are dropped: a sending IP's reputation moves on
# (Gmail's Postmaster Tools and Microsoft's SNDS report it per day), and a site that has
# not been cut for 7 days will tell us again if it still minds.  Also bounds the store.
FORGET_AFTER = 7 * 86400.0
# A site not heard of for a day, with nothing learned, is dropped from memory.
IDLE_AFTER = 86400.0
PROVIDER_PREFIX = "provider:"
# How far (seconds) a report may begin before its window and still count in it: clocks
# and the report's own timing are not exact to the millisecond.
STRADDLE = 0.05


@dataclass(frozen=True, slots=True)
class Effective:
    """The limits in force for a site: connections, messages per second (None:
    unlimited), and the end of a suspension in force (None: not suspended)."""

    connections: int
    rate: float | None
    suspended_until: float | None


class ChangeKind(enum.Enum):
    DECREASE = "decrease"  # AIMD cut a site's limits
    INCREASE = "increase"  # AIMD raised them
    RULE = "rule"  # a rule reduced the limits of a site or provider
    SUSPEND = "suspend"  # a rule suspended a site or provider
    RESUME = "resume"  # a suspension ended
    BOUNCE = "bounce"  # a rule asks to bounce the key's queued mail (until `until`)
    EXPIRE = "expire"  # a reduction or bounce ended, or learned limits were forgotten


@dataclass(frozen=True, slots=True)
class Change:
    """One change of shaping state, for the delivery log and metrics.  `key`: a site, or
    "provider:NAME"; `connections`/`rate`: the limits the change set (None: not set by
    it); `until`: when a rule's action ends; `rule`: the rule's name, if one acted."""

    key: str
    kind: ChangeKind
    connections: int | None
    rate: float | None
    until: float | None
    reason: str
    rule: str | None = None


@dataclass(slots=True)
class _Site:
    aimd: AimdState = field(default_factory=AimdState)
    window: Window | None = None
    ceiling: Ceiling | None = None  # as last observed
    provider: str | None = None
    seen: float = 0.0
    delivered: int = 0  # totals since start, for metrics
    replies: int = 0
    throttled: int = 0


class Shaper:
    """Rules + AIMD + store, for every site; see the module docstring."""

    def __init__(self, settings: ShapingSettings, rules: list[Rule], store: ShapingStore) -> None:
        self.settings = settings
        self.rules = tuple(rules)
        self._store = store
        self._throttling = shipped_throttling()
        self._sites: dict[str, _Site] = {}
        self._actions: dict[str, tuple[ActiveAction, ...]] = {}
        self._hits: dict[tuple[str, str], collections.deque[float]] = {}
        self._last: dict[str, tuple[float, str]] = {}  # key -> (when, why) of the last change
        loaded = store.load()
        for key, state in loaded.items():
            if state.actions:
                self._actions[key] = state.actions
            if not key.startswith(PROVIDER_PREFIX) and not state.aimd.at_ceiling:
                self._sites[key] = _Site(aimd=state.aimd)
        self._restored = bool(loaded)  # actions loaded, not yet checked against the time

    # -- what workers report -----------------------------------------------------------

    def observe(
        self,
        site: str,
        provider: str | None,
        delivered: int,
        replies: Sequence[ReplySample],
        ceiling: Ceiling,
        now: float,
        *,
        in_use: int | None = None,
        opened: int = 0,
        span: float = 0.0,
    ) -> list[Change]:
        """A worker's report for `site`: `delivered` messages accepted, the non-2xx
        `replies` and `opened` connections let in over the `span` seconds before `now`.
        `in_use`: the most connections the site held meanwhile (the supervisor's leases),
        if known; without it a window with `min_samples` counts as using its
        connections.  A new window starts where its first report's span does."""
        self._settle(now)
        if not self.settings.enabled:
            return []
        st = self._sites.get(site)
        if st is None:
            st = self._sites[site] = _Site()
        st.ceiling, st.provider, st.seen = ceiling, provider, now
        throttled = in_txn = 0
        matched: list[Rule] = []
        for sample in replies:
            rule = self._first_rule(sample)
            if rule is not None:
                matched.append(rule)
            if self._throttling.is_throttling(sample):
                throttled += 1
                in_txn += sample.stage is Stage.TRANSACTION
        st.delivered += delivered
        st.replies += len(replies)
        st.throttled += throttled
        if st.window is None:
            st.window = Window(start=now - span)
        # The batch counts before rules fire: a fraction of an unlimited rate is of the
        # rate delivered up to now.  A report that began before the window did is partly
        # evidence of the limits before it (each worker's first report after a cut): only
        # the share of its span inside the window counts.  Counted whole, it made a
        # receiver taking 200/s look like 156/s with half its replies throttling; left
        # out, each worker's first quarter second was missing from a 4 s window, 6 % of
        # its deliveries (bench/shaping.py).
        inside = 1.0
        if now - span < st.window.start - STRADDLE:
            inside = max(0.0, now - st.window.start) / span if span > 0 else 0.0
        if inside > 0:
            part = [round(n * inside) for n in (delivered, len(replies), throttled, in_txn, opened)]
            st.window.add(part[0], part[1], part[2], part[3], in_use, part[4], at=now)
        changes: list[Change] = []
        for rule in matched:
            changes.extend(self._hit(rule, site, provider, ceiling, now))
        changes.extend(self._close(site, st, now))
        return changes

    # -- what the arbiter asks -----------------------------------------------------------

    def effective(self, site: str, provider: str | None, ceiling: Ceiling, now: float) -> Effective:
        """The limits in force for `site` (see the module docstring)."""
        self._settle(now)
        if not self.settings.enabled:
            return Effective(ceiling.connections, ceiling.rate, None)
        st = self._sites.get(site)
        aimd = st.aimd if st is not None else AimdState()
        conns, rate = aimd.limits(ceiling)
        suspended: float | None = None
        for action in self._in_force(site, provider, now):
            if action.action is Action.REDUCE:
                if action.connections is not None:
                    conns = min(conns, action.connections)
                if action.rate is not None:
                    rate = action.rate if rate is None else min(rate, action.rate)
            elif action.action is Action.SUSPEND:
                suspended = max(suspended or 0.0, action.until)
        s = self.settings
        conns = min(ceiling.connections, max(s.floor_connections, conns))
        if rate is not None:
            rate = max(s.floor_rate, rate)
            if ceiling.rate is not None:
                rate = min(ceiling.rate, rate)
        return Effective(conns, rate, suspended)

    def bouncing_until(self, site: str, provider: str | None, now: float) -> float | None:
        """When a bounce action in force on the site or its provider ends (None: none):
        mail queued for the site until then is bounced too."""
        ends = [a.until for a in self._in_force(site, provider, now) if a.action is Action.BOUNCE]
        return max(ends) if ends else None

    # -- time passing --------------------------------------------------------------------

    def tick(self, now: float) -> list[Change]:
        """Ends rule actions whose time is up, closes windows that are due (a site that
        went quiet still gets its verdict), forgets week-old learned limits and idle
        sites.  Call it every second or so."""
        self._settle(now)
        changes: list[Change] = []
        for key in list(self._actions):
            ended = [a for a in self._actions[key] if a.until <= now]
            if not ended:
                continue
            self._set_actions(key, tuple(a for a in self._actions[key] if a.until > now))
            for a in ended:
                kind = ChangeKind.RESUME if a.action is Action.SUSPEND else ChangeKind.EXPIRE
                changes.append(
                    self._note(Change(key, kind, None, None, a.until, "ended", a.rule), now)
                )
        for site, st in list(self._sites.items()):
            if self.settings.enabled:
                changes.extend(self._close(site, st, now))
            if not st.aimd.at_ceiling and now - st.aimd.changed >= FORGET_AFTER:
                st.aimd = AimdState()
                self._save(site)
                why = f"learned limits unchanged for {FORGET_AFTER / 86400:.0f} days: forgotten"
                changes.append(
                    self._note(Change(site, ChangeKind.EXPIRE, None, None, None, why), now)
                )
            if st.aimd.at_ceiling and now - st.seen >= IDLE_AFTER:
                del self._sites[site]
                if site not in self._actions:
                    self._last.pop(site, None)
        for hit_key, times in list(self._hits.items()):
            if not times or now - times[-1] >= IDLE_AFTER:
                del self._hits[hit_key]
        return changes

    # -- telling people ------------------------------------------------------------------

    def snapshot(self, now: float) -> dict[str, dict[str, object]]:
        """Per key, for metrics and `volley queue`: the limits in force, a suspension's
        end, the last change (when, why), rules in force, and totals since start."""
        out: dict[str, dict[str, object]] = {}
        for site, st in self._sites.items():
            if st.ceiling is not None:
                eff = self.effective(site, st.provider, st.ceiling, now)
            else:  # restored, not heard of since: what was learned, no maximum known yet
                eff = Effective(st.aimd.connections or 0, st.aimd.rate, None)
            when, why = self._last.get(site, (st.aimd.changed or None, st.aimd.reason))
            out[site] = {
                "connections": eff.connections,
                "rate": eff.rate,
                "suspended_until": eff.suspended_until,
                "changed": when,
                "reason": why,
                "rules": sorted(a.rule for a in self._in_force(site, st.provider, now)),
                "delivered": st.delivered,
                "replies": st.replies,
                "throttled": st.throttled,
            }
        for key, actions in self._actions.items():
            if key in out:
                continue
            live = [a for a in actions if a.until > now]
            if not live:
                continue
            caps = [a for a in live if a.action is Action.REDUCE]
            suspended = [a.until for a in live if a.action is Action.SUSPEND]
            when, why = self._last.get(key, (None, live[-1].reason))
            out[key] = {
                "connections": min((a.connections for a in caps if a.connections), default=None),
                "rate": min((a.rate for a in caps if a.rate), default=None),
                "suspended_until": max(suspended, default=None),
                "changed": when,
                "reason": why,
                "rules": sorted(a.rule for a in live),
            }
        return out

    def record(self, change: Change, now: float) -> dict[str, object]:
        """The delivery log's `shaping` record for `change`."""
        return {
            "event": "shaping",
            "key": change.key,
            "kind": change.kind.value,
            "connections": change.connections,
            "rate": change.rate,
            "until": change.until,
            "reason": change.reason,
            "rule": change.rule,
            "ts": now,
        }

    # -- inside ------------------------------------------------------------------------

    def _settle(self, now: float) -> None:
        """Once, on the first call after loading: rule actions that ended while Volley
        was down are dropped without a word (they are not restored)."""
        if not self._restored:
            return
        self._restored = False
        for key in list(self._actions):
            live = tuple(a for a in self._actions[key] if a.until > now)
            if live != self._actions[key]:
                self._set_actions(key, live)

    def _first_rule(self, sample: ReplySample) -> Rule | None:
        if not self.rules:
            return None
        line = reply_line(sample)
        for rule in self.rules:
            if rule.matches(sample.code, line):
                return rule
        return None

    def _hit(
        self, rule: Rule, site: str, provider: str | None, ceiling: Ceiling, now: float
    ) -> list[Change]:
        """One match of `rule`: count it; fire when its trigger is reached."""
        key = site if rule.scope is Scope.SITE or provider is None else PROVIDER_PREFIX + provider
        times = self._hits.setdefault((rule.name, key), collections.deque())
        while times and now - times[0] >= rule.window:
            times.popleft()
        times.append(now)
        if len(times) < rule.count:
            return []
        times.clear()
        return self._fire(rule, key, site, provider, ceiling, now)

    def _fire(
        self, rule: Rule, key: str, site: str, provider: str | None, ceiling: Ceiling, now: float
    ) -> list[Change]:
        mine = [a for a in self._actions.get(key, ()) if a.rule == rule.name and a.until > now]
        conns: int | None = None
        rate: float | None = None
        if rule.action is Action.REDUCE:
            # A fraction is of the limits in force without this rule's own action, so a
            # rule firing again renews its cap instead of halving it again.
            eff = self._without(rule.name, key, site, provider, ceiling, now)
            if rule.connections is not None:
                conns = max(1, math.floor(rule.connections.of(eff.connections)))
            if rule.rate is not None:
                base = eff.rate if eff.rate is not None else self._accepted(site, now)
                if not rule.rate.fraction or base is not None:
                    rate = rule.rate.of(base or 0.0)
        until = now + rule.duration
        if mine and (mine[0].connections, mine[0].rate) == (conns, rate):
            if until - mine[0].until < rule.duration / 4:
                return []  # renewed recently enough: no record
        reason = f"rule {rule.name}: {rule.count} match{'es' if rule.count > 1 else ''}"
        if rule.window:
            reason += f" in {rule.window:g}s"
        action = ActiveAction(rule.name, rule.action, until, conns, rate, reason)
        others = tuple(a for a in self._actions.get(key, ()) if a.rule != rule.name)
        if rule.duration > 0:
            self._set_actions(key, (*others, action))
        kind = {
            Action.REDUCE: ChangeKind.RULE,
            Action.SUSPEND: ChangeKind.SUSPEND,
            Action.BOUNCE: ChangeKind.BOUNCE,
        }[rule.action]
        return [self._note(Change(key, kind, conns, rate, until, reason, rule.name), now)]

    def _without(
        self, rule: str, key: str, site: str, provider: str | None, ceiling: Ceiling, now: float
    ) -> Effective:
        saved = self._actions.get(key)
        if saved is not None:
            self._actions[key] = tuple(a for a in saved if a.rule != rule)
        try:
            return self.effective(site, provider, ceiling, now)
        finally:
            if saved is not None:
                self._actions[key] = saved

    def _accepted(self, site: str, now: float) -> float | None:
        """The site's delivery rate in its current window, if it has one."""
        st = self._sites.get(site)
        if st is None or st.window is None or st.window.delivered == 0:
            return None
        return st.window.delivered / max(now - st.window.start, 1.0)

    def _close(self, site: str, st: _Site, now: float) -> list[Change]:
        w, ceiling = st.window, st.ceiling
        if w is None or ceiling is None:
            return []
        if not (w.due(now, self.settings.window) or w.alarming(now, self.settings)):
            return []
        verdict = judge(st.aimd, w, ceiling, self.settings, now)
        if verdict.verdict is Verdict.CARRY:
            return []
        after = w.throttled / w.samples if verdict.verdict is Verdict.DECREASE else None
        st.window = None if w.samples == 0 else Window(start=now, after_cut=after)
        before, st.aimd = st.aimd, verdict.state
        if st.aimd != before:
            self._save(site)
        if verdict.verdict is Verdict.HOLD:
            return []
        kind = ChangeKind.DECREASE if verdict.verdict is Verdict.DECREASE else ChangeKind.INCREASE
        conns, rate = st.aimd.limits(ceiling)
        return [self._note(Change(site, kind, conns, rate, None, st.aimd.reason), now)]

    def _in_force(self, site: str, provider: str | None, now: float) -> list[ActiveAction]:
        found = [a for a in self._actions.get(site, ()) if a.until > now]
        if provider is not None:
            found += [a for a in self._actions.get(PROVIDER_PREFIX + provider, ()) if a.until > now]
        return found

    def _set_actions(self, key: str, actions: tuple[ActiveAction, ...]) -> None:
        if actions:
            self._actions[key] = actions
        else:
            self._actions.pop(key, None)
        self._save(key)

    def _save(self, key: str) -> None:
        st = self._sites.get(key)
        state = SiteState(st.aimd if st is not None else AimdState(), self._actions.get(key, ()))
        if state.is_default:
            self._store.delete(key)
        else:
            self._store.save(key, state)

    def _note(self, change: Change, now: float) -> Change:
        self._last[change.key] = (now, change.reason)
        return change
