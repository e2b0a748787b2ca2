"""The bounce classifier: a failure's origin, codes and text -> a category.

Responsible for: trying rules in order (the first that matches wins, as KumoMTA's
`BounceClassifier`: user rules, then the shipped ones), bounded caches of results, the
default classifier (shipped rules only), and reading an asynchronous bounce's RFC 3464
Status and Diagnostic-Code fields (`classify_dsn`) so a DSN that comes back later is
classified by the very same rules as the reply it reports.
Not responsible for: what the rules are (engine.policy.rules, bounce_rules.toml), where
user rules come from (engine.config.bounce), or acting on a category
(engine.runtime.outcome logs it, counts it and puts it in the DSN).

Rules see the text's *shape*: e-mail addresses and tokens of 8 or more characters that
hold a digit (IP addresses, host names like mx12.example, queue and session ids such as
Gmail's "41be03b00d2f7-7e8b6e2b3f1si1234567a12.123 - gsmtp") become "#", and a
multi-line reply's repeated enhanced code is dropped.  So the "<bob@x>: Recipient address
rejected" of every recipient is one text, classified once.  Short codes stay ("[BL21]",
"(S3150)", "554.30").

Pure apart from the caches: same input, same answer.  Cost (timeit on the 2-core test
machine; tests/unit/policy/test_classifier.py checks the ratios): walking the shipped
rules takes 130-340 µs for a 200-character reply, because CPython's `re` tries each of
~30 text rules' alternatives at every position (KumoMTA's RegexSet is a DFA; the
standard library has none).  So results are cached twice: by the exact text (a hit
~0.3 µs) and by its shape (~8-15 µs, the shape's substitution).  A text seen before, or
one differing only in addresses and ids, never walks the rules again.  Deliveries are
never classified (engine.runtime.outcome skips them): a delivered message pays nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from engine.model import Origin
from engine.policy.categories import Category, Classification
from engine.policy.rules import MAX_TEXT, Rule, shipped_rules

__all__ = ["UNCATEGORIZED", "Classifier", "classify_dsn", "default_classifier", "text_shape"]

UNCATEGORIZED = Classification(Category.Uncategorized, "")

# Results remembered per cache (KumoMTA keeps 1024 hits and 1024 misses).  A campaign's
# failures come in a few dozen shapes per destination.  Keys hold the text (at most
# MAX_TEXT characters): at most ~2 MB per cache of 1024 entries.
CACHE_SIZE = 1024

# The variable parts of a text (see the module docstring): an address starting where a
# token starts, or a token of 8+ characters whose first digit follows only ASCII letters
# and punctuation.  Possessive (`++`): no backtracking, one pass over at most MAX_TEXT
# characters (~10 µs for 200; a first version that backtracked took 20).
_VARIABLE = re.compile(
    r"(?<![^\s<>()\[\]])[^\s<>()\[\]@]++@[^\s<>()\[\]]++|\b(?=[a-zA-Z_.:-]*+\d)[\w.:-]{8,}"
)

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
        self._exact: dict[_Key, Classification] = {}  # by the text as given
        self._shapes: dict[_Key, Classification] = {}  # by its shape

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
        key = (origin, kind, code, enhanced, text)
        found = self._exact.get(key)
        if found is not None:
            return found
        shape = text_shape(text, enhanced)
        shape_key = (origin, kind, code, enhanced, shape)
        found = self._shapes.get(shape_key)
        if found is None:
            found = UNCATEGORIZED
            for rule in self._by_origin[origin]:
                if rule.matches(origin, kind, code, enhanced, shape):
                    found = rule.result
                    break
            _remember(self._shapes, shape_key, found)
        _remember(self._exact, key, found)
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


def text_shape(text: str, enhanced: str = "") -> str:
    """What rules match: `text` with addresses and id-like tokens as "#" and a multi-line
    reply's repeated enhanced codes dropped (see the module docstring)."""
    if enhanced and text.find(enhanced, 1) > 0:
        # engine.smtp joins a reply's lines with a space, each line starting with the
        # code: Gmail's "... receiving mail at a rate that 4.2.1 prevents ...".
        text = text.replace(f" {enhanced} ", " ")
    return _VARIABLE.sub("#", text)


def _remember(cache: dict[_Key, Classification], key: _Key, found: Classification) -> None:
    if len(cache) >= CACHE_SIZE:
        cache.clear()  # crude but bounded; refilling costs one walk per shape
    cache[key] = found


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
