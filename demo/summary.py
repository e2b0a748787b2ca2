"""What the demo did, from Volley's delivery log and what the receivers got.

Responsible for: `tally` (a pure function: log records + the recipient list + the
receivers' envelope recipients -> `Summary`) and `Summary.lines` (the closing report).
Not responsible for: reading files or running anything (demo.run).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Summary", "tally"]

FINAL = ("delivered", "bounced", "expired")


@dataclass(slots=True)
class Summary:
    messages: int
    domains: int
    delivered: int = 0
    deferred_then_delivered: int = 0
    deferrals: int = 0
    bounced: int = 0
    expired: int = 0
    pending: int = 0  # no final outcome in the log yet
    bounce_reasons: Counter[str] = field(default_factory=Counter)
    dsn_created: int = 0
    dsn_delivered: int = 0
    received_ok: bool = False  # receivers got exactly the delivered recipients, once each
    received_problem: str = ""
    first_ts: float = 0.0  # first "received" (intake) record
    last_ts: float = 0.0  # last final outcome
    first_try: int = 0  # final outcomes at the first attempt (no deferral before)
    first_try_last_ts: float = 0.0

    @property
    def accounted(self) -> bool:
        return self.pending == 0 and self.received_ok and self.dsn_delivered == self.dsn_created

    @property
    def rate(self) -> float:
        """Outcomes per second at the first attempt: retries wait on purpose (1 s, 2 s,
        4 s), so counting them would measure the retry schedule, not Volley."""
        span = self.first_try_last_ts - self.first_ts
        return self.first_try / span if span > 0 else 0.0

    def lines(self, *, sender: str, drop_rate: float) -> list[str]:
        span = self.last_ts - self.first_ts
        head = (
            "everything delivered or accounted for"
            if self.accounted
            else "NOT everything is accounted for"
        )
        reasons = ", ".join(f"{n} {why}" for why, n in self.bounce_reasons.most_common(4))
        out = [
            f"Volley demo: {self.messages} messages to {self.domains} domains: {head}.",
            "",
            f"  delivered    {self.delivered:>6}   of which {self.deferred_then_delivered} after a "
            f"deferral (greylisting, an MX that was down; {self.deferrals} deferrals in all)",
            f"  bounced      {self.bounced:>6}   {reasons}"
            if self.bounced
            else f"  bounced      {self.bounced:>6}",
        ]
        if self.expired:
            out.append(f"  expired      {self.expired:>6}")
        out.append(
            f"  still queued {self.pending:>6}"
            + ("" if self.pending == 0 else "   (no final outcome in the log)")
        )
        if self.dsn_created:
            out.append(
                f"  bounce reports (DSN) to {sender}: {self.dsn_delivered} of "
                f"{self.dsn_created} delivered to its mailbox"
            )
        got = "got every delivered message exactly once"
        out.append(f"  receivers    {got if self.received_ok else self.received_problem}")
        first_span = self.first_try_last_ts - self.first_ts
        out.append(
            f"  rate         {self.rate:.0f} messages/s: {self.first_try} outcomes at the first "
            f"attempt in {first_span:.1f} s (drops arrived at {drop_rate:.0f}/s)"
        )
        out.append(
            f"  all done in  {span:.1f} s from the first drop taken to the last outcome, "
            "retries included"
        )
        return out


def tally(
    records: Iterable[Mapping[str, Any]],
    rcpts: Sequence[str],
    domains: int,
    received: Mapping[str, Sequence[str]],
    sender: str,
) -> Summary:
    """`records`: the delivery log; `rcpts`: every recipient dropped (one message each);
    `received`: domain -> envelope recipients its receivers took (the sender's mailbox
    included, where the DSNs go)."""
    s = Summary(messages=len(rcpts), domains=domains)
    wanted = set(rcpts)
    final: dict[str, str] = {}
    final_ts: dict[str, float] = {}
    deferred: set[str] = set()
    for r in records:
        event, rcpt = r.get("event"), r.get("rcpt")
        ts = float(r.get("ts", 0.0))
        if event == "received":
            s.first_ts = ts if s.first_ts == 0.0 else min(s.first_ts, ts)
        elif event == "dsn":
            s.dsn_created += 1
        elif rcpt == sender and event == "delivered" and not r.get("sender"):
            s.dsn_delivered += 1
        elif rcpt in wanted:
            if event == "deferred":
                s.deferrals += 1
                deferred.add(rcpt)
            elif event in FINAL:
                final[rcpt] = event
                final_ts[rcpt] = ts
                s.last_ts = max(s.last_ts, ts)
                if event == "bounced":
                    s.bounce_reasons[_reason(r)] += 1
    outcomes = Counter(final.values())
    s.delivered, s.bounced, s.expired = (outcomes[e] for e in FINAL)
    s.pending = len(wanted) - len(final)
    s.deferred_then_delivered = sum(1 for r in deferred if final.get(r) == "delivered")
    for rcpt, ts in final_ts.items():
        if rcpt not in deferred:
            s.first_try += 1
            s.first_try_last_ts = max(s.first_try_last_ts, ts)
    got = Counter(r for rs in received.values() for r in rs if r != sender)
    delivered = {r for r, e in final.items() if e == "delivered"}
    twice = [r for r, n in got.items() if n > 1]
    if twice:
        s.received_problem = f"{len(twice)} recipients got a message twice, e.g. {twice[0]}"
    elif set(got) != delivered:
        diff = sorted(set(got) ^ delivered)
        s.received_problem = f"{len(diff)} differ from the log's delivered, e.g. {diff[0]}"
    else:
        s.received_ok = True
    return s


# Bounces grouped by enhanced status code (RFC 3463), named for people.
_CAUSE = {"5.1.1": "unknown user", "5.1.2": "no such domain", "5.1.10": "null MX"}


def _reason(r: Mapping[str, Any]) -> str:
    """A short label for a bounce: "unknown user (550 5.1.1)"."""
    code, enhanced = r.get("code") or "", str(r.get("enhanced") or "")
    status = f"{code} {enhanced}".strip()
    cause = _CAUSE.get(enhanced) or str(r.get("text") or "").removeprefix(enhanced).strip()[:40]
    return f"{cause} ({status})" if status else cause or "unknown"
