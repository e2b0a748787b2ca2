"""The bounce classifier: a failure's origin, codes and text -> a category.

Responsible for: trying rules in order (the first that matches wins, as KumoMTA's
`BounceClassifier`: user rules, then the shipped ones), a bounded cache of results, the
default classifier (shipped rules only), and reading an asynchronous bounce's RFC 3464
Status and Diagnostic-Code fields (`classify_dsn`) so a DSN that comes back later is
classified by the very same rules as the reply it reports.
Not responsible for: what the rules are (engine.policy.rules, bounce_rules.toml), where
user rules come from (engine.config.bounce), or acting on a category (engine.runtime.outcome
logs it, counts it and puts it in the DSN).

Pure apart from the cache: same input, same answer.  Cost, measured with timeit on the
2-core test machine (tests/unit/policy/test_classifier.py holds the benchmark's shape):
a cache hit ~0.4 µs; a miss walks the rules, ~3-25 µs for the shipped ~100 rules (most
of it the text regexes of the rules whose codes fit).  Deliveries are never classified
(engine.runtime.outcome skips them), so a delivered message pays nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from engine.model import Origin
from engine.policy.categories import Category, Classification
from engine.policy.rules import MAX_TEXT, Rule, shipped_rules

__all__ = ["UNCATEGORIZED", "Classifier", "classify_dsn", "default_classifier"]

UNCATEGORIZED = Classification(Category.Uncategorized, "")

# Results remembered (KumoMTA keeps 1024 hits and 1024 misses).  A campaign's failures
# repeat a few dozen texts per destination; a server that puts a queue id or the address
# in every reply makes each text unique, and then the cache simply misses.  The key holds
# the text (at most MAX_TEXT characters): at most ~2 MB for 1024 entries.
CACHE_SIZE = 1024

_Key = tuple[Origin, str, int, str, str]

# RFC 3464 §2.3.6: diagnostic-type ";" text, e.g. "smtp; 550 5.1.1 <a@b>: unknown user".
_DIAGNOSTIC = re.compile(r"\s*(?:[A-Za-z][A-Za-z0-9-]*\s*;)?\s*(?:(\d{3})(?:[ -]|$))?\s*(.*)", re.S)
_STATUS = re.compile(r"[245]\.\d{1,3}\.\d{1,3}")


class Classifier:
    """Ordered rules -> the category of a failure."""

    def __init__(self, rules: Iterable[Rule]) -> None:
        self.rules: tuple[Rule, ...] = tuple(rules)
        # Per origin, only the rules that can match it: a reply never looks at the
        # connection, route or expiry rules.
        self._by_origin: dict[Origin, tuple[Rule, ...]] = {
            o: tuple(r for r in self.rules if r.origins is None or o in r.origins) for o in Origin
        }
        self._cache: dict[_Key, Classification] = {}

    @classmethod
    def with_user_rules(cls, user: Sequence[Rule], base: Sequence[Rule] = ()) -> Classifier:
        """`user` rules first, then `base` (default: the shipped rules) except those a user
        rule replaces by taking its id."""
        base = base or shipped_rules()
        taken = {r.id for r in user}
        return cls([*user, *(r for r in base if r.id not in taken)])

    def classify(
        self, origin: Origin, kind: str, code: int, enhanced: str, text: str
    ) -> Classification:
        """The first matching rule's classification, or Uncategorized.

        `kind`: the FailureKind / RouteFailureKind value ("" for others); `code`: the
        basic reply code (0 if none); `enhanced`: "5.1.1" ("" if none); `text`: the
        reply or diagnostic text (only its first MAX_TEXT characters count).
        """
        if len(text) > MAX_TEXT:
            text = text[:MAX_TEXT]
        if enhanced and text.find(enhanced, 1) > 0:
            # A multi-line reply repeats its code on every line and engine.smtp joins the
            # lines with a space: Gmail's "... receiving mail at a rate that 4.2.1
            # prevents ...".  Without the repeats the wording matches as written.
            text = text.replace(f" {enhanced} ", " ")
        key = (origin, kind, code, enhanced, text)
        cache = self._cache
        found = cache.get(key)
        if found is not None:
            return found
        found = UNCATEGORIZED
        for rule in self._by_origin[origin]:
            if rule.matches(origin, kind, code, enhanced, text):
                found = rule.result
                break
        if len(cache) >= CACHE_SIZE:
            cache.clear()  # crude but bounded; refilling costs one miss per text
        cache[key] = found
        return found

    def classify_dsn(self, status: str | None, diagnostic: str | None) -> Classification:
        """An asynchronous bounce's recipient, from its RFC 3464 fields: `status` (e.g.
        "5.1.1") and `diagnostic` (e.g. "smtp; 550 5.1.1 <a@b>: user unknown", or None).
        The basic code and the text are read from the diagnostic; an invalid status is
        replaced by the enhanced code the diagnostic text starts with, if any."""
        code, text = _split_diagnostic(diagnostic or "")
        enhanced = (status or "").strip()
        if _STATUS.fullmatch(enhanced) is None:
            m = _STATUS.match(text)
            enhanced = m.group(0) if m else ""
        return self.classify(Origin.DSN, "", code, enhanced, text)


def _split_diagnostic(diagnostic: str) -> tuple[int, str]:
    """(basic code or 0, text) of a Diagnostic-Code value."""
    m = _DIAGNOSTIC.match(diagnostic)
    assert m is not None  # every part of the pattern is optional
    code = int(m.group(1)) if m.group(1) else 0
    return code, " ".join(m.group(2).split())


_DEFAULT: Classifier | None = None


def default_classifier() -> Classifier:
    """The shipped rules alone, built once per process."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = Classifier(shipped_rules())
    return _DEFAULT


def classify_dsn(
    status: str | None, diagnostic: str | None, classifier: Classifier | None = None
) -> Classification:
    """`Classifier.classify_dsn` with `classifier` (default: the shipped rules; pass
    `settings.bounce.classifier` to include the user's rules)."""
    return (classifier or default_classifier()).classify_dsn(status, diagnostic)
