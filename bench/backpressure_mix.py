"""What the backpressure bench's receivers answer: the mix, parsed, and its seeded decisions.

Responsible for: the `--backpressure` mix (`Mix`, `parse_mix`: e.g.
"451@rcpt=5%,421@connect=1%,550@rcpt=2%,slow=1%:2s") and `Decider`, the pure function from
(seed, what is being answered) to the reply, so that Volley and Postfix meet the same
receivers: the same recipients are refused for good, each delivery attempt of a recipient
has the same odds of a temporary refusal or a slow reply, and the decisions do not depend
on which engine asks or in which order.
Not responsible for: speaking SMTP (bench.backpressure_sink), running the engines or
reporting (bench.backpressure).

How a decision is keyed (one 64-bit hash of the seed and the key, mapped to [0, 1)):
  * connect: the receiver address and the connection's number on it (1, 2, ...);
  * a 5xx at RCPT or end of data: the recipient alone — a user that does not exist stays
    so on every retry (both engines then bounce it once);
  * a 4xx at RCPT or end of data, and a slow end-of-data reply: the recipient and the
    attempt (how many RCPTs for it this receiver has seen): a retry gets fresh odds.
Rules of one phase take disjoint shares of the answers, so "451@rcpt=5%,550@rcpt=2%"
refuses 7 % of RCPTs: 2 % of recipients for good, and 5 % of all RCPTs for now. Slow
replies (at end of data) are drawn apart from the refusals, from another hash.
"""

from __future__ import annotations

import hashlib
import re
import struct
from dataclasses import dataclass

__all__ = ["DEFAULT_MIX", "Decider", "Mix", "Rule", "parse_mix"]

DEFAULT_MIX = "451@rcpt=5%,421@connect=1%,550@rcpt=2%,slow=1%:2s"

PHASES = ("connect", "rcpt", "data")

# Reply texts: the enhanced code each basic code usually carries at that point.
_TEXTS = {
    421: "4.7.0 Too many connections, try again later (bench)",
    450: "4.2.1 Mailbox busy (bench)",
    451: "4.7.1 Try again later (bench)",
    452: "4.2.2 Mailbox full (bench)",
    550: "5.1.1 User unknown (bench)",
    552: "5.2.2 Mailbox full (bench)",
    554: "5.7.1 Rejected by policy (bench)",
}

_RULE = re.compile(r"^(\d{3})@(\w+)=(\d+(?:\.\d+)?)%$")
_SLOW = re.compile(r"^slow=(\d+(?:\.\d+)?)%:(\d+(?:\.\d+)?)(ms|s)$")


@dataclass(frozen=True, slots=True)
class Rule:
    code: int
    phase: str  # one of PHASES
    share: float  # 0..1

    @property
    def reply(self) -> bytes:
        text = _TEXTS.get(self.code, f"{self.code // 100}.0.0 Refused (bench)")
        return f"{self.code} {text}\r\n".encode()


@dataclass(frozen=True, slots=True)
class Mix:
    rules: tuple[Rule, ...] = ()
    slow_share: float = 0.0
    slow_seconds: float = 0.0

    def describe(self) -> str:
        parts = [f"{r.code}@{r.phase}={r.share * 100:g}%" for r in self.rules]
        if self.slow_share:
            parts.append(f"slow={self.slow_share * 100:g}%:{self.slow_seconds:g}s")
        return ",".join(parts)


def parse_mix(spec: str) -> Mix:
    """Parse "CODE@PHASE=P%,...,slow=P%:Ds" (PHASE: connect, rcpt, data).

    Raises:
        ValueError: naming the item that does not parse, a code that is not 4xx/5xx, or
            a phase whose shares exceed 100 %.
    """
    rules: list[Rule] = []
    slow_share = slow_seconds = 0.0
    for item in (i.strip() for i in spec.split(",")):
        if not item:
            continue
        if m := _SLOW.match(item):
            slow_share = float(m.group(1)) / 100
            slow_seconds = float(m.group(2)) / (1000 if m.group(3) == "ms" else 1)
            continue
        m = _RULE.match(item)
        if m is None:
            raise ValueError(f"--backpressure: cannot read {item!r} (CODE@PHASE=P% or slow=P%:Ds)")
        code, phase, share = int(m.group(1)), m.group(2), float(m.group(3)) / 100
        if phase not in PHASES:
            raise ValueError(f"--backpressure: {item!r}: phase must be one of {', '.join(PHASES)}")
        if not 400 <= code <= 599:
            raise ValueError(f"--backpressure: {item!r}: only 4xx and 5xx refusals")
        rules.append(Rule(code, phase, share))
    for phase in PHASES:
        if sum(r.share for r in rules if r.phase == phase) > 1:
            raise ValueError(f"--backpressure: the {phase} shares add up to more than 100%")
    if slow_share > 1:
        raise ValueError("--backpressure: slow share above 100%")
    return Mix(tuple(rules), slow_share, slow_seconds)


def _unit(seed: int, *key: object) -> float:
    """A uniform number in [0, 1) from the seed and the key (blake2b: stable everywhere)."""
    digest = hashlib.blake2b(repr((seed, *key)).encode(), digest_size=8).digest()
    return struct.unpack(">Q", digest)[0] / 2**64


class Decider:
    """The receivers' answers for one mix and seed (pure: the same key, the same answer)."""

    def __init__(self, mix: Mix, seed: int) -> None:
        self.mix = mix
        self.seed = seed
        self._by_phase = {p: [r for r in mix.rules if r.phase == p] for p in PHASES}

    def _pick(self, phase: str, recipient: str, attempt: int) -> Rule | None:
        """Permanent (5xx) rules first, by recipient; then temporary ones, by recipient and
        attempt, their slices widened by 1 / (1 - the 5xx share) so that each rule still
        gets its share of all answers."""
        rules = self._by_phase[phase]
        if not rules:
            return None
        low = 0.0
        u = _unit(self.seed, phase, recipient)
        for rule in rules:
            if rule.code >= 500:
                if low <= u < low + rule.share:
                    return rule
                low += rule.share
        rest = 1.0 - low
        if rest <= 0:
            return None
        u = _unit(self.seed, phase, recipient, attempt)
        low = 0.0
        for rule in rules:
            if rule.code < 500:
                if low <= u < low + rule.share / rest:
                    return rule
                low += rule.share / rest
        return None

    def connect(self, address: str, number: int) -> bytes | None:
        """The refusal instead of a greeting for connection `number` (1, 2, ...) to
        `address`, or None: greet."""
        rules = self._by_phase["connect"]
        u = _unit(self.seed, "connect", address, number)
        low = 0.0
        for rule in rules:
            if low <= u < low + rule.share:
                return rule.reply
            low += rule.share
        return None

    def rcpt(self, recipient: str, attempt: int) -> bytes | None:
        """The refusal of RCPT for `recipient`'s `attempt`-th RCPT here, or None."""
        rule = self._pick("rcpt", recipient, attempt)
        return rule.reply if rule else None

    def data(self, recipient: str, attempt: int) -> tuple[bytes | None, float]:
        """The end-of-data refusal (None: accepted) and the seconds to hold the reply, for
        a transaction whose first accepted recipient is `recipient`."""
        rule = self._pick("data", recipient, attempt)
        delay = 0.0
        mix = self.mix
        if mix.slow_share and _unit(self.seed, "slow", recipient, attempt) < mix.slow_share:
            delay = mix.slow_seconds
        return (rule.reply if rule else None), delay
