"""What a test receiver does for one recipient, chosen by the address's local part.

Responsible for: the behaviour table (KumoMTA maildir-sink style), so one receiver serves
every scenario at once: `scenario_for` maps an address to a `Scenario`; `Behaviour` says
what each prefix does; and the reply texts those behaviours send.
Not responsible for: carrying a behaviour out on an SMTP session
(tests.support.receiver_smtp) or running a server (tests.support.receiver).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

__all__ = [
    "DATAFAIL_REPLY",
    "DATATEMPFAIL_REPLY",
    "FLAKY_REPLY",
    "PERMFAIL_REPLY",
    "RCPT421_REPLY",
    "TEMPFAIL_REPLY",
    "Behaviour",
    "Scenario",
    "scenario_for",
]

TEMPFAIL_REPLY = "450 4.2.0 mailbox busy (test)"
PERMFAIL_REPLY = "550 5.1.1 no such user (test)"
FLAKY_REPLY = "451 4.3.0 try again (test)"
DATAFAIL_REPLY = "554 5.6.0 content rejected (test)"
DATATEMPFAIL_REPLY = "451 4.3.0 queue full (test)"
RCPT421_REPLY = "421 4.4.2 closing (test)"


class Behaviour(enum.Enum):
    """What the receiver does for a recipient, chosen by its local part's prefix."""

    ACCEPT = "accept"
    TEMPFAIL = "tempfail"  # 450 at RCPT, always
    PERMFAIL = "permfail"  # 550 at RCPT
    FLAKY = "flaky"  # flakyN-...: 451 for the first N RCPTs of the exact address, then accept
    DATAFAIL = "datafail"  # 554 at end of data
    DATATEMPFAIL = "datatempfail"  # 451 at end of data
    DROPDATA = "dropdata"  # record (dropped=True), then abort without replying
    DROPDATAONCE = "dropdataonce"  # as DROPDATA the first time for the address, then accept
    STALL = "stall"  # hold the RCPT reply until release_stalled() or STALL_SECONDS
    CLOSERCPT = "closercpt"  # abort the connection at RCPT
    RCPT421 = "rcpt421"  # 421 at RCPT, then close


@dataclass(frozen=True, slots=True)
class Scenario:
    behaviour: Behaviour
    flaky_count: int = 0  # only for Behaviour.FLAKY


# Longest prefix first where one prefix starts another (dropdataonce / dropdata).
_PREFIXES: tuple[tuple[str, Behaviour], ...] = (
    ("dropdataonce", Behaviour.DROPDATAONCE),
    ("dropdata", Behaviour.DROPDATA),
    ("datatempfail", Behaviour.DATATEMPFAIL),
    ("datafail", Behaviour.DATAFAIL),
    ("tempfail", Behaviour.TEMPFAIL),
    ("permfail", Behaviour.PERMFAIL),
    ("stall", Behaviour.STALL),
    ("closercpt", Behaviour.CLOSERCPT),
    ("rcpt421", Behaviour.RCPT421),
)
_FLAKY = re.compile(r"flaky(\d+)-")


def scenario_for(address: str) -> Scenario:
    """The behaviour for one recipient address (case-insensitive on the local part).

    `flaky` needs its count and a dash (`flaky3-bob@x`); anything unmatched is accepted.
    """
    local = address.rpartition("@")[0] if "@" in address else address
    local = local.lower()
    m = _FLAKY.match(local)
    if m is not None:
        return Scenario(Behaviour.FLAKY, int(m.group(1)))
    for prefix, behaviour in _PREFIXES:
        if local.startswith(prefix):
            return Scenario(behaviour)
    return Scenario(Behaviour.ACCEPT)
