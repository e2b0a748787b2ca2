"""Shaping automation rules: a reply pattern, a trigger and an action, read from data.

Responsible for: `Rule` (what one rule matches and what it does), reading rules from TOML
tables with errors naming the offending key (`RuleError`; engine.config.shaping turns it
into a ConfigError), the rules shipped in engine/shaping/rules.toml (`load_shipped`), and
putting a user's rules before the shipped ones (`combine`).
Not responsible for: counting matches, applying or expiring actions
(engine.shaping.adaptive), what a throttling reply is (engine.shaping.replies), or where
user rules come from (engine.config.shaping).

A rule is a table (KumoMTA's `automation` blocks, inside Volley):

    name = "yahoo-tss04"              # unique; logged with every action it takes
    regex = '\\[TS?S04\\]'            # searched in "CODE ENHANCED text", ignoring case
    codes = [421, 451]                # optional: only replies with these codes
    scope = "provider"                # "site" (default) or "provider" (all its sites)
    trigger = "immediate"             # (default) or "N/window": "3/10m", "2/hr"
    action = "suspend"                # "reduce" | "suspend" | "bounce"
    connections = 1                   # reduce: an int, or a fraction (0.5) of the limit in force
    rate = "1/min"                    # reduce: a rate, or a fraction (0.5) of the rate in force
    duration = "2h"                   # how long the action holds
    enabled = false                   # a user rule named as a shipped one turns it off

The first rule (user rules, then shipped ones) whose regex and codes match a reply takes
it; one reply never counts for two rules.
"""

from __future__ import annotations

import enum
import functools
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, TypeVar

from engine.shaping.gcra import parse_rate
from engine.shaping.units import parse_span

__all__ = [
    "Action",
    "Amount",
    "Rule",
    "RuleError",
    "Scope",
    "combine",
    "compile_regex",
    "load_shipped",
    "read_rules",
]

_KEYS = (
    "name",
    "regex",
    "codes",
    "scope",
    "trigger",
    "action",
    "connections",
    "rate",
    "duration",
    "enabled",
)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,99}")
_TRIGGER = re.compile(r"\s*(\d+)\s*/\s*(.+)")
_E = TypeVar("_E", bound=enum.Enum)


class RuleError(ValueError):
    """A rule is wrong; the message starts with the key, e.g. "shaping.rules[2].regex"."""


class Scope(enum.Enum):
    SITE = "site"  # the site whose reply matched
    PROVIDER = "provider"  # every site of its provider (the site alone if it has none)


class Action(enum.Enum):
    REDUCE = "reduce"  # lower the connection and/or rate limits for `duration`
    SUSPEND = "suspend"  # send nothing for `duration`
    BOUNCE = "bounce"  # bounce the queued mail (and mail queued for `duration`)


@dataclass(frozen=True, slots=True)
class Amount:
    """A limit a rule sets: an absolute value, or a fraction of the limit in force."""

    value: float
    fraction: bool

    def of(self, current: float) -> float:
        return self.value * current if self.fraction else self.value


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule, ready to match.  Equal when read from equal tables."""

    name: str
    pattern: re.Pattern[str] = field(compare=False)
    action: Action = field(compare=False)
    duration: float = field(compare=False)
    codes: frozenset[int] | None = field(default=None, compare=False)
    scope: Scope = field(default=Scope.SITE, compare=False)
    count: int = field(default=1, compare=False)  # matches needed within `window`
    window: float = field(default=0.0, compare=False)  # seconds; 0: immediate
    connections: Amount | None = field(default=None, compare=False)
    rate: Amount | None = field(default=None, compare=False)  # messages per second
    enabled: bool = field(default=True, compare=False)
    source: Mapping[str, Any] = field(default_factory=dict)

    def __hash__(self) -> int:
        return hash(self.name)

    def __repr__(self) -> str:
        return f"Rule({self.name!r}, {self.action.value})"

    def matches(self, code: int, line: str) -> bool:
        """Whether a reply (`code`, its `reply_line`) is this rule's; codes first, as the
        regex costs more."""
        if self.codes is not None and code not in self.codes:
            return False
        return self.pattern.search(line) is not None

    def to_dict(self) -> dict[str, Any]:
        """The table the rule was read from (read_rules reads it back)."""
        return dict(self.source)


def read_rules(raw: Any, where: str) -> list[Rule]:
    """Rules from a list of TOML tables (`[[shaping.rules]]`, a rules file's `[[rules]]`),
    in order; RuleError naming `where[i].field` when one is wrong or a name repeats."""
    if not isinstance(raw, list):
        raise RuleError(f"{where}: expected an array of tables ([[{where}]])")
    rules: list[Rule] = []
    seen: set[str] = set()
    for i, table in enumerate(raw):
        rule = _read_rule(table, f"{where}[{i}]")
        if rule.name in seen:
            raise RuleError(f"{where}[{i}].name: {rule.name!r} is used by an earlier rule")
        seen.add(rule.name)
        rules.append(rule)
    return rules


@functools.cache
def _shipped() -> tuple[Rule, ...]:
    text = resources.files("engine.shaping").joinpath("rules.toml").read_text("utf-8")
    return tuple(read_rules(tomllib.loads(text).get("rules", []), "rules.toml:rules"))


def load_shipped() -> list[Rule]:
    """The rules of engine/shaping/rules.toml, in order (read once per process)."""
    return list(_shipped())


def combine(user: Sequence[Rule], shipped: Iterable[Rule] | None = None) -> list[Rule]:
    """What a Shaper tries, in order: the user's enabled rules, then the shipped ones
    (default: load_shipped()) that no user rule names (`enabled = false` turns one off)."""
    taken = {r.name for r in user}
    base = load_shipped() if shipped is None else shipped
    return [r for r in user if r.enabled] + [r for r in base if r.name not in taken and r.enabled]


def _read_rule(table: Any, key: str) -> Rule:
    if not isinstance(table, Mapping):
        raise RuleError(f"{key}: expected a table, got {table!r}")
    for name in table:
        if name not in _KEYS:
            raise RuleError(f"{key}.{name}: unknown key (a rule has {', '.join(_KEYS)})")
    name = table.get("name")
    if not isinstance(name, str) or _NAME.fullmatch(name) is None:
        raise RuleError(f"{key}.name: expected a name like yahoo-tss04, got {name!r}")
    key = f"{key} ({name})"  # from here on errors name the rule too
    enabled = table.get("enabled", True)
    if not isinstance(enabled, bool):
        raise RuleError(f"{key}.enabled: expected true or false, got {enabled!r}")
    pattern = compile_regex(table.get("regex"), f"{key}.regex")
    action = _enum(Action, table.get("action"), f"{key}.action", None)
    scope = _enum(Scope, table.get("scope"), f"{key}.scope", Scope.SITE)
    count, window = _trigger(table.get("trigger", "immediate"), f"{key}.trigger")
    connections = _connections(table.get("connections"), f"{key}.connections")
    rate = _rate(table.get("rate"), f"{key}.rate")
    if action is Action.REDUCE and connections is None and rate is None:
        raise RuleError(f"{key}: action reduce needs connections, rate or both")
    if action is not Action.REDUCE and (connections is not None or rate is not None):
        raise RuleError(f"{key}: connections and rate are for action reduce only")
    raw_duration = table.get("duration")
    if not isinstance(raw_duration, str | int | float) or isinstance(raw_duration, bool):
        raise RuleError(f'{key}.duration: expected a length of time like "90m"')
    duration = _span(raw_duration, f"{key}.duration")
    if duration <= 0 and action is not Action.BOUNCE:
        raise RuleError(f"{key}.duration: must be above 0")
    return Rule(
        name=name,
        pattern=pattern,
        action=action,
        duration=duration,
        codes=_codes(table.get("codes"), f"{key}.codes"),
        scope=scope,
        count=count,
        window=window,
        connections=connections,
        rate=rate,
        enabled=enabled,
        source=dict(table),
    )


def compile_regex(value: Any, key: str) -> re.Pattern[str]:
    """A case-insensitive regex from a TOML value; RuleError naming `key` when bad."""
    if not isinstance(value, str) or not value:
        raise RuleError(f"{key}: expected a regular expression, got {value!r}")
    try:
        return re.compile(value, re.IGNORECASE)
    except re.error as e:
        raise RuleError(f"{key}: bad regular expression {value!r}: {e}") from None


def _enum(kind: type[_E], value: Any, key: str, default: _E | None) -> _E:
    if value is None and default is not None:
        return default
    try:
        return kind(value)
    except ValueError:
        names = " | ".join(repr(m.value) for m in kind)
        raise RuleError(f"{key}: expected {names}, got {value!r}") from None


def _trigger(value: Any, key: str) -> tuple[int, float]:
    if value == "immediate":
        return 1, 0.0
    m = _TRIGGER.fullmatch(value) if isinstance(value, str) else None
    if m is not None and int(m.group(1)) >= 1:
        try:
            return int(m.group(1)), parse_span(m.group(2))
        except ValueError:
            pass
    raise RuleError(f'{key}: expected "immediate" or "N/window" like "3/10m", got {value!r}')


def _span(value: str | float, key: str) -> float:
    if isinstance(value, int | float):
        if value < 0:
            raise RuleError(f"{key}: must not be negative")
        return float(value)
    try:
        return parse_span(value)
    except ValueError as e:
        raise RuleError(f"{key}: {e}") from None


def _fraction(value: float, key: str) -> Amount:
    if not 0 < value < 1:
        raise RuleError(f"{key}: a fraction must be between 0 and 1, got {value!r}")
    return Amount(value, fraction=True)


def _connections(value: Any, key: str) -> Amount | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RuleError(f"{key}: expected a number of connections or a fraction like 0.5")
    if isinstance(value, float):
        return _fraction(value, key)
    if value < 1:
        raise RuleError(f"{key}: at least 1 (use action suspend to send nothing)")
    return Amount(float(value), fraction=False)


def _rate(value: Any, key: str) -> Amount | None:
    if value is None:
        return None
    if isinstance(value, float):
        return _fraction(value, key)
    if isinstance(value, str):
        try:
            return Amount(parse_rate(value).per_second, fraction=False)
        except ValueError as e:
            raise RuleError(f"{key}: {e}") from None
    raise RuleError(f'{key}: expected a rate like "10/min" or a fraction like 0.5')


def _codes(value: Any, key: str) -> frozenset[int] | None:
    if value is None:
        return None
    items = value if isinstance(value, list) else [value]
    if not items or not all(
        isinstance(v, int) and not isinstance(v, bool) and 200 <= v <= 599 for v in items
    ):
        raise RuleError(f"{key}: expected reply codes like [421, 451], got {value!r}")
    return frozenset(items)
