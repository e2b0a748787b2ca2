"""What a delivery result adds to the suppression list (pure: the time is passed in).

Responsible for: `decide` - one recipient's result (a bounce category, or None for a
delivery), whether it was permanent, the message it was about, the address's soft-bounce
history and the time -> the entry to add (if any) and the history to keep - and
`fallback_category`, the category of a reply by its enhanced status code alone, used
until every outcome carries the bounce classifier's category (issue #12 part 2: the
lead reconciles after merging; `category_of` prefers the classifier's when present).
Not responsible for: where histories are kept (engine.suppress.store, owned by the
supervisor: engine.suppress.service) or who reports results (engine.suppress.feed).

The rules (`[suppression]`, engine.config.suppress):
  * a permanent failure whose category is in `categories` (default InvalidRecipient,
    BadDomain, InactiveMailbox) suppresses the address globally, without expiry;
  * soft bounces: `count` distinct *messages* to the address failing with
    `soft_bounce.category` (default QuotaIssues, 3) within `days` (7), with no delivery
    to it in between, suppress it globally for `expire_after` (30 days: a full mailbox is
    often emptied again).  Messages, not attempts: one message retried through a
    weekend of "452 4.2.2 mailbox full" is one event, not a dozen.  Temporary and
    permanent failures both count;
  * a delivery clears the address's soft-bounce history (listmonk's counts never
    reset after good deliveries: capability-anchors §5's pitfall);
  * anything else (Uncategorized, SpamBlock, AutoReply, ...) adds nothing: those are
    about the sender or the content, not the address.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.config.suppress import DAY, SuppressionSettings
from engine.suppress.model import GLOBAL, Entry, Source, clean_reason

__all__ = ["Decision", "History", "category_of", "decide", "fallback_category"]

History = tuple[tuple[float, str], ...]  # (time, message key) per counted message

# RFC 3463 subject.detail -> category, for 4xx/5xx replies whose category is not known
# yet; the same codes engine/policy/bounce_rules.toml gives these categories.
_BY_ENHANCED: dict[str, str] = {
    "1.1": "InvalidRecipient",  # bad destination mailbox address
    "1.3": "InvalidRecipient",  # bad destination mailbox address syntax
    "1.4": "InvalidRecipient",  # destination mailbox address ambiguous
    "1.2": "BadDomain",  # bad destination system address
    "1.10": "BadDomain",  # null MX (RFC 7505)
    "1.6": "InactiveMailbox",  # destination mailbox has moved, no forwarding address
    "2.1": "InactiveMailbox",  # mailbox disabled, not accepting messages
    "2.2": "QuotaIssues",  # mailbox full
}


@dataclass(frozen=True, slots=True)
class Decision:
    entry: Entry | None  # to add, if any
    history: History | None  # the address's history from now on; None: unchanged


def fallback_category(enhanced: str | None) -> str | None:
    """The category of an enhanced status code ("5.1.1" -> InvalidRecipient), or None."""
    if not enhanced:
        return None
    cls, _, rest = enhanced.partition(".")
    if cls not in ("4", "5"):
        return None
    return _BY_ENHANCED.get(rest)


def category_of(outcome: Any) -> str | None:
    """A failure's category: the bounce classifier's when the outcome carries one
    (`classification.category`, engine.policy), else `fallback_category` of its code."""
    classification = getattr(outcome, "classification", None)
    if classification is not None:
        return str(classification.category.value)
    return fallback_category(getattr(outcome, "enhanced", None))


def decide(
    category: str | None,
    recipient: str,
    sender_domain: str | None,
    *,
    permanent: bool,
    message: str,
    text: str,
    history: History,
    now: float,
    settings: SuppressionSettings,
) -> Decision:
    """See the module docstring.  `recipient` is the address key; `category` None is a
    delivery; `message` names the message (its spool key) and `text` the reply."""
    cleared = () if history else None
    if category is None:
        return Decision(None, cleared)
    if permanent and category in settings.categories:
        reason = clean_reason(f"{category}: {text}")
        return Decision(Entry(recipient, GLOBAL, reason, Source.BOUNCE, now, None), cleared)
    soft = settings.soft_bounce
    if not soft.enabled or category != soft.category:
        return Decision(None, None)
    since = now - soft.days * DAY
    events = [e for e in history if e[0] > since]
    if all(m != message for _, m in events):
        events.append((now, message))
    if len(events) < soft.count:
        kept = tuple(events)
        return Decision(None, kept if kept != history else None)
    reason = clean_reason(
        f"{category}: {len(events)} messages in {soft.days:g} days"
        + (f" (from {sender_domain})" if sender_domain else "")
        + f"; last: {text}"
    )
    entry = Entry(recipient, GLOBAL, reason, Source.BOUNCE, now, now + soft.expire_after)
    return Decision(entry, ())
