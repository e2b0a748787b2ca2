"""Bounce classification rules: what one rule matches, read and checked from TOML.

Responsible for: `Rule` (a category and the conditions that choose it), parsing a rule
from a TOML table with errors that name the offending key (`RuleError`), reading a rules
document (`[[rules]]` tables), and the rules shipped with Volley (`shipped_rules`, from
engine/policy/bounce_rules.toml).
Not responsible for: the order rules are tried in or caching (engine.policy.classifier),
or where user rules come from (engine.config.bounce).

A rule is a table:

    id = "gmail-no-such-user"         # unique; logged with the category it chose
    category = "InvalidRecipient"     # one of engine.policy.categories.Category
    origin = ["reply", "dsn"]         # engine.model.Origin values
    kind = ["timeout"]                # with origin connection / route: the failure's kind
    code = [550, "55x"]               # basic reply codes; "x" is any digit
    enhanced = ["5.1.1", "x.1.", "5.7.26"]   # exact, or a prefix ending in "."; x = 2, 4, 5
    text = "does not exist|no such user"     # a regex searched in the text, ignoring case

Every condition given must hold; within one list any value will do; a rule needs at least
one condition.  Text is matched on its first MAX_TEXT characters: a reply can be 64 KiB,
and no real rejection puts its reason that far in.
"""

from __future__ import annotations

import difflib
import functools
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from engine.model import FailureKind, Origin, RouteFailureKind
from engine.policy.categories import Category, Classification

__all__ = ["MAX_TEXT", "Rule", "RuleError", "parse_rule", "parse_rules", "shipped_rules"]

MAX_TEXT = 2048

_KEYS = ("id", "category", "origin", "kind", "code", "enhanced", "text")
_KINDS: dict[Origin, frozenset[str]] = {
    Origin.CONNECTION: frozenset(k.value for k in FailureKind),
    Origin.ROUTE: frozenset(k.value for k in RouteFailureKind),
}
_CODE = re.compile(r"[2-5x][0-9x][0-9x]")
_ENHANCED_EXACT = re.compile(r"[245x]\.\d{1,3}\.\d{1,3}")
_ENHANCED_PREFIX = re.compile(r"[245x]\.(?:\d{1,3}\.)?")
_ID = re.compile(r"[^\s\x00-\x1f\x7f]{1,100}")


class RuleError(ValueError):
    """A rule is wrong; `key` names the offending field (e.g. "rules[3].text")."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule, ready to match.  None for a condition means "any".  Two rules are equal
    when read from equal tables (the compiled fields follow from the table)."""

    id: str
    category: Category = field(compare=False)
    origins: frozenset[Origin] | None = field(default=None, compare=False)
    kinds: frozenset[str] | None = field(default=None, compare=False)
    codes: frozenset[int] | None = field(default=None, compare=False)  # every code meant
    enhanced_exact: frozenset[str] | None = field(default=None, compare=False)
    enhanced_prefixes: tuple[str, ...] = field(default=(), compare=False)
    text: re.Pattern[str] | None = field(default=None, compare=False)
    source: Mapping[str, Any] = field(default_factory=dict)  # its table, with its id
    result: Classification = field(init=False, compare=False)

    def __post_init__(self) -> None:
        # Built once: a match hands out this value, never a new one.
        object.__setattr__(self, "result", Classification(self.category, self.id))

    def __hash__(self) -> int:
        return hash(self.id)

    def __repr__(self) -> str:
        return f"Rule({self.id!r}, {self.category.value})"

    def matches(self, origin: Origin, kind: str, code: int, enhanced: str, text: str) -> bool:
        """Whether every condition holds.  Cheapest first: the regex runs last."""
        if self.origins is not None and origin not in self.origins:
            return False
        if self.kinds is not None and kind not in self.kinds:
            return False
        if self.codes is not None and code not in self.codes:
            return False
        if self.enhanced_exact is not None or self.enhanced_prefixes:
            exact = self.enhanced_exact is not None and enhanced in self.enhanced_exact
            if not exact and not enhanced.startswith(self.enhanced_prefixes):
                return False
        return self.text is None or self.text.search(text, 0, MAX_TEXT) is not None

    def to_dict(self) -> dict[str, Any]:
        """The rule as a TOML table that parse_rule reads back (with its id)."""
        return dict(self.source)


def parse_rule(table: Any, key: str, default_id: str | None = None) -> Rule:
    """A Rule from one TOML table; RuleError naming `key.field` when it is wrong.
    `default_id`: the id when the table has none (None: an id is required)."""
    if not isinstance(table, Mapping):
        raise RuleError(key, f"expected a table, got {table!r}")
    for name in table:
        if name not in _KEYS:
            raise RuleError(f"{key}.{name}", f"unknown key (a rule has {', '.join(_KEYS)})")
    rule_id = table.get("id", default_id)
    if rule_id is None:
        raise RuleError(f"{key}.id", "missing")
    if not isinstance(rule_id, str) or _ID.fullmatch(rule_id) is None:
        raise RuleError(f"{key}.id", f"expected a name without spaces, got {rule_id!r}")
    category = _category(table.get("category"), f"{key}.category")
    origins = _origins(table.get("origin"), f"{key}.origin")
    kinds = _kinds(table.get("kind"), origins, f"{key}.kind")
    codes = _codes(table.get("code"), f"{key}.code")
    exact, prefixes = _enhanced(table.get("enhanced"), f"{key}.enhanced")
    text = _text(table.get("text"), f"{key}.text")
    if all(table.get(k) is None for k in _KEYS[2:]):
        raise RuleError(key, "a rule needs at least one of origin, kind, code, enhanced, text")
    return Rule(
        id=rule_id,
        category=category,
        origins=origins,
        kinds=kinds,
        codes=codes,
        enhanced_exact=exact,
        enhanced_prefixes=prefixes,
        text=text,
        source={"id": rule_id, **{k: v for k, v in table.items() if k != "id"}},
    )


def parse_rules(document: Any, key: str = "rules", default_ids: str | None = None) -> list[Rule]:
    """The rules of a rules document (`[[rules]]` tables and nothing else), in order.
    `default_ids`: ids for rules without one are `<default_ids>[i]` (None: required)."""
    if not isinstance(document, Mapping):
        raise RuleError(key, "expected a table")
    for name in document:
        if name != "rules":
            raise RuleError(name, "unknown key (a rules file holds only [[rules]] tables)")
    tables = document.get("rules", [])
    if not isinstance(tables, list):
        raise RuleError(key, "expected an array of tables ([[rules]])")
    rules = []
    seen: set[str] = set()
    for i, table in enumerate(tables):
        default = None if default_ids is None else f"{default_ids}[{i}]"
        rule = parse_rule(table, f"{key}[{i}]", default)
        if rule.id in seen:
            raise RuleError(f"{key}[{i}].id", f"{rule.id!r} is used by an earlier rule")
        seen.add(rule.id)
        rules.append(rule)
    return rules


@functools.cache
def shipped_rules() -> tuple[Rule, ...]:
    """The rules in engine/policy/bounce_rules.toml, read once per process."""
    text = resources.files("engine.policy").joinpath("bounce_rules.toml").read_text("utf-8")
    return tuple(parse_rules(tomllib.loads(text), "bounce_rules.toml:rules"))


def _list(value: Any, key: str, what: str) -> list[Any] | None:
    if value is None:
        return None
    items = value if isinstance(value, list) else [value]
    if not items:
        raise RuleError(key, f"expected {what} or a non-empty list of them")
    return items


def _category(value: Any, key: str) -> Category:
    if value is None:
        raise RuleError(key, "missing")
    try:
        return Category(value)
    except ValueError:
        close = difflib.get_close_matches(str(value), [c.value for c in Category], n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        names = ", ".join(c.value for c in Category)
        raise RuleError(key, f"unknown category {value!r}; {hint}one of: {names}") from None


def _origins(value: Any, key: str) -> frozenset[Origin] | None:
    items = _list(value, key, "an origin")
    if items is None:
        return None
    out = set()
    for item in items:
        try:
            out.add(Origin(item))
        except ValueError:
            names = ", ".join(o.value for o in Origin)
            raise RuleError(key, f"unknown origin {item!r}; one of: {names}") from None
    return frozenset(out)


def _kinds(value: Any, origins: frozenset[Origin] | None, key: str) -> frozenset[str] | None:
    items = _list(value, key, "a kind")
    if items is None:
        return None
    if origins is None or not origins <= _KINDS.keys():
        raise RuleError(key, 'needs origin = "connection" or "route" (only those have kinds)')
    allowed = frozenset().union(*(_KINDS[o] for o in origins))
    for item in items:
        if item not in allowed:
            names = ", ".join(sorted(allowed))
            raise RuleError(key, f"unknown kind {item!r}; one of: {names}")
    return frozenset(items)


def _codes(value: Any, key: str) -> frozenset[int] | None:
    items = _list(value, key, "a reply code")
    if items is None:
        return None
    out: set[int] = set()
    for item in items:
        pattern = str(item) if isinstance(item, int) and not isinstance(item, bool) else item
        if not isinstance(pattern, str) or _CODE.fullmatch(pattern.lower()) is None:
            raise RuleError(key, f'expected a reply code like 550, "55x" or "5xx", got {item!r}')
        out.update(_expand_code(pattern.lower()))
    return frozenset(out)


def _expand_code(pattern: str) -> list[int]:
    digits = [
        "2345" if i == 0 and c == "x" else "0123456789" if c == "x" else c
        for i, c in enumerate(pattern)
    ]
    return [int(a + b + c) for a in digits[0] for b in digits[1] for c in digits[2]]


def _enhanced(value: Any, key: str) -> tuple[frozenset[str] | None, tuple[str, ...]]:
    items = _list(value, key, "an enhanced status code")
    if items is None:
        return None, ()
    exact: set[str] = set()
    prefixes: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise RuleError(key, f'expected a code like "5.1.1" or "x.7.", got {item!r}')
        if _ENHANCED_EXACT.fullmatch(item):
            exact.update(_expand_class(item))
        elif _ENHANCED_PREFIX.fullmatch(item):
            prefixes.extend(_expand_class(item))
        else:
            raise RuleError(
                key,
                f'expected a code like "5.1.1", a prefix like "5.1." or "x.7." '
                f"(x: any class), got {item!r}",
            )
    return (frozenset(exact) if exact else None), tuple(prefixes)


def _expand_class(code: str) -> list[str]:
    return [c + code[1:] for c in "245"] if code[0] == "x" else [code]


def _text(value: Any, key: str) -> re.Pattern[str] | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise RuleError(key, f"expected a regular expression, got {value!r}")
    try:
        return re.compile(value, re.IGNORECASE)
    except re.error as e:
        raise RuleError(key, f"bad regular expression {value!r}: {e}") from None
