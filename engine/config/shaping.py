"""Adaptive shaping settings: `[shaping]`.

Responsible for: the names, types, defaults and checks of the table (issue #10 part 3),
reading the user's automation rules (inline `[[shaping.rules]]` tables, then those of
`rules_file`, a TOML file of `[[rules]]` tables), so a bad value is one line naming the
key at start and on reload (`shaping.rules[0] (slow-x).regex: bad regular expression
...`).
Not responsible for: the rule format (engine.shaping.rules), or acting on any of it
(engine.shaping.adaptive, .aimd).

```toml
[shaping]
enabled = true              # false: no rules, no AIMD; the configured limits alone
rules_file = ""             # more [[rules]] in a TOML file, read at start and on SIGHUP
decrease = 0.7              # a throttled window multiplies the limits by this (CUBIC's beta)
increase_connections = 1    # a clean window where the limit was used adds this many
increase_rate = 0.1         # ... and this share of the site's maximum rate
window = "1m"               # how long a window of evidence lasts
throttle_share = 0.05       # throttling replies / (deliveries + replies) that cut
min_samples = 20            # deliveries + replies a window needs before it can cut
floor_connections = 1       # never below these
floor_rate = "1/min"

[[shaping.rules]]           # tried before the shipped engine/shaping/rules.toml
name = "slow-example"
regex = 'too busy for you'
trigger = "3/10m"
action = "reduce"
connections = 0.5
rate = "10/min"
duration = "1h"
```

As with `[bounce]`, `shaping_dict` carries the file's rules inline, so a process given
the dict gets exactly the rules the supervisor checked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.config.values import ConfigError, Table, read_toml_file
from engine.shaping.gcra import parse_rate
from engine.shaping.rules import Rule, RuleError, read_rules

__all__ = ["ShapingSettings", "read_shaping", "shaping_dict"]


@dataclass(frozen=True, slots=True)
class ShapingSettings:
    enabled: bool = True
    # Not compared: a dict sent on carries the file's rules inline (shaping_dict).
    rules_file: Path | None = field(default=None, compare=False)
    rules: tuple[Rule, ...] = ()  # the user's, in the order they are tried
    decrease: float = 0.7  # CUBIC's beta: 86 % of what a receiver takes vs 77 % at 0.5 (simulated)
    increase_connections: int = 1
    increase_rate: float = 0.1  # of the site's maximum rate
    window: float = 60.0  # seconds
    throttle_share: float = 0.05
    min_samples: int = 20
    floor_connections: int = 1
    floor_rate: float = 1 / 60  # messages per second


def read_shaping(t: Table) -> ShapingSettings:
    """`[shaping]` (pass `root.table("shaping")`); ConfigError naming the key."""
    d = ShapingSettings()
    enabled = t.boolean("enabled", d.enabled)
    decrease = _share(t, "decrease", d.decrease, upper_open=True)
    increase_connections = t.integer("increase_connections", d.increase_connections, 1)
    increase_rate = _share(t, "increase_rate", d.increase_rate, upper_open=False)
    window = t.duration("window", d.window)
    if window <= 0:
        raise ConfigError(f"{t.key('window')}: must be above 0")
    throttle_share = _share(t, "throttle_share", d.throttle_share, upper_open=False)
    min_samples = t.integer("min_samples", d.min_samples, 1)
    floor_connections = t.integer("floor_connections", d.floor_connections, 1)
    floor_rate = _rate(t, "floor_rate", d.floor_rate)
    inline = _inline(t)
    path = t.path("rules_file")
    t.finish()
    from_file = [] if path is None else _file_rules(path, t.key("rules_file"))
    seen = {r.name for r in inline}
    for rule in from_file:
        if rule.name in seen:
            raise ConfigError(
                f"{t.key('rules_file')}: {path}: rule {rule.name!r} is also in {t.key('rules')}"
            )
    return ShapingSettings(
        enabled=enabled,
        rules_file=path,
        rules=(*inline, *from_file),
        decrease=decrease,
        increase_connections=increase_connections,
        increase_rate=increase_rate,
        window=window,
        throttle_share=throttle_share,
        min_samples=min_samples,
        floor_connections=floor_connections,
        floor_rate=floor_rate,
    )


def shaping_dict(s: ShapingSettings) -> dict[str, Any]:
    """The table read_shaping reads back to equal settings (the file's rules inline)."""
    return {
        "enabled": s.enabled,
        "decrease": s.decrease,
        "increase_connections": s.increase_connections,
        "increase_rate": s.increase_rate,
        "window": s.window,
        "throttle_share": s.throttle_share,
        "min_samples": s.min_samples,
        "floor_connections": s.floor_connections,
        "floor_rate": s.floor_rate,
        "rules": [r.to_dict() for r in s.rules],
    }


def _share(t: Table, name: str, default: float, *, upper_open: bool) -> float:
    """A number in (0, 1) (`upper_open`) or (0, 1]."""
    v = t.number(name, default)
    if v <= 0 or v > 1 or (upper_open and v == 1):
        bound = "below 1" if upper_open else "at most 1"
        raise ConfigError(f"{t.key(name)}: expected a number above 0 and {bound}, got {v!r}")
    return v


def _rate(t: Table, name: str, default: float) -> float:
    """A rate: "1/min", or a number of messages per second (what shaping_dict writes)."""
    v = t.get(name)
    if v is None:
        return default
    if isinstance(v, int | float) and not isinstance(v, bool) and v > 0:
        return float(v)
    if isinstance(v, str):
        try:
            return parse_rate(v).per_second
        except ValueError as e:
            raise ConfigError(f"{t.key(name)}: {e}") from None
    raise ConfigError(f'{t.key(name)}: expected a rate like "1/min", got {v!r}')


def _inline(t: Table) -> list[Rule]:
    raw = t.get("rules")
    if raw is None:
        return []
    try:
        return read_rules(raw, t.key("rules"))
    except RuleError as e:
        raise ConfigError(str(e)) from None


def _file_rules(path: Path, key: str) -> list[Rule]:
    document = read_toml_file(path, key)
    unknown = sorted(set(document) - {"rules"})
    if unknown:
        raise ConfigError(f"{key}: {path}: unknown key {unknown[0]!r} (only [[rules]] tables)")
    try:
        return read_rules(document.get("rules", []), "rules")
    except RuleError as e:
        raise ConfigError(f"{key}: {path}: {e}") from None
