"""Bounce classification settings: `[bounce]`, the user's own rules.

Responsible for: reading `bounce.rules_file` (a TOML file of `[[rules]]` tables) and the
inline `[[bounce.rules]]` tables, checking every rule (a bad one is one line naming the
key: `bounce.rules[2].category: unknown category ...`, `bounce.rules_file: /etc/x.toml:
rules[0].text: bad regular expression ...`), and building the classifier: inline rules,
then the file's, then the shipped ones (engine/policy/bounce_rules.toml); a user rule
with a shipped rule's id replaces it.
Not responsible for: the rule format or matching (engine.policy.rules, .classifier).

The file is read when the settings are (start, and each SIGHUP: a reload applies an
edited file); `bounce_dict` then carries its rules inline, so workers get exactly the
rules the supervisor checked and never read the file themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.config.values import ConfigError, Table, read_toml_file
from engine.policy.classifier import Classifier, default_classifier
from engine.policy.rules import Rule, RuleError, parse_rule, parse_rules

__all__ = ["BounceSettings", "bounce_dict", "read_bounce"]


@dataclass(frozen=True, slots=True)
class BounceSettings:
    # Not compared: settings sent to a worker carry the file's rules inline (bounce_dict).
    rules_file: Path | None = field(default=None, compare=False)
    rules: tuple[Rule, ...] = ()  # the user's, in the order they are tried
    classifier: Classifier = field(default_factory=default_classifier, compare=False)


def read_bounce(t: Table) -> BounceSettings:
    inline = _inline(t)
    path = t.path("rules_file")
    t.finish()
    from_file = [] if path is None else _file_rules(path, t.key("rules_file"))
    rules = [*inline, *from_file]
    seen: dict[str, str] = {}
    for i, rule in enumerate(rules):
        where = f"{t.key('rules')}[{i}]" if i < len(inline) else f"{t.key('rules_file')}: {path}"
        if rule.id in seen:
            raise ConfigError(f"{where}: rule id {rule.id!r} is also used by {seen[rule.id]}")
        seen[rule.id] = where
    if not rules:
        return BounceSettings(rules_file=path)
    return BounceSettings(
        rules_file=path, rules=tuple(rules), classifier=Classifier.with_user_rules(rules)
    )


def bounce_dict(b: BounceSettings) -> dict[str, Any]:
    """The user's rules inline, the file's included (see the module docstring)."""
    return {"rules": [r.to_dict() for r in b.rules]}


def _inline(t: Table) -> list[Rule]:
    raw = t.get("rules")
    if raw is None:
        return []
    key = t.key("rules")
    if not isinstance(raw, list):
        raise ConfigError(f"{key}: expected an array of tables ([[{key}]])")
    try:
        return [parse_rule(table, f"{key}[{i}]", f"{key}[{i}]") for i, table in enumerate(raw)]
    except RuleError as e:
        raise ConfigError(str(e)) from None


def _file_rules(path: Path, key: str) -> list[Rule]:
    document = read_toml_file(path, key)
    try:
        return parse_rules(document, "rules", default_ids=path.name)
    except RuleError as e:
        raise ConfigError(f"{key}: {path}: {e}") from None
