"""Lengths of time as shaping rules write them: "90m", "2 hours", "30 minutes", "hr".

Responsible for: `parse_span` (a length of time -> seconds), accepting KumoMTA's
spellings as well as Volley's, so a rule copied from KumoMTA's shaping.toml (`duration =
"2 hours"`, `Threshold = "2/hr"`) reads unchanged.
Not responsible for: configuration durations (engine.config.values.parse_duration is
stricter on purpose: "30s", "10m"), rates (engine.shaping.gcra.parse_rate), or naming
the key of a bad value (callers do).

Imports nothing from Volley: engine.config.shaping imports the shaping rules, which use
these, so importing engine.config from here would be a cycle.
"""

from __future__ import annotations

import re

__all__ = ["SECONDS", "parse_span"]

SECONDS = {  # one unit in seconds; engine.shaping.gcra reads rates with it too
    "ms": 0.001,
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "m": 60.0,
    "min": 60.0,
    "minute": 60.0,
    "h": 3600.0,
    "hr": 3600.0,
    "hour": 3600.0,
    "d": 86400.0,
    "day": 86400.0,
    "w": 604800.0,
    "week": 604800.0,
}
# "90m", "2 hours", "1.5h", "hr" (one of the unit): the count is optional so that a
# trigger can say "2/hr".
_SPAN = re.compile(r"\s*(\d+(?:\.\d+)?)?\s*([a-z]+)\s*", re.IGNORECASE)


def parse_span(text: str) -> float:
    """Seconds from "90m", "2 hours", "30 minutes", "1hr", "hr" (one hour), "45s".

    Raises:
        ValueError: with the reason, e.g. "'2 fortnights' is not a length of time".
    """
    m = _SPAN.fullmatch(text)
    unit = m.group(2).lower() if m else ""
    if unit not in SECONDS and unit.endswith("s"):
        unit = unit[:-1]  # a plural: "hours", "mins"
    if m is None or unit not in SECONDS:
        raise ValueError(f"{text!r} is not a length of time like 90m, 2h, 2 hours")
    count = float(m.group(1)) if m.group(1) is not None else 1.0
    return count * SECONDS[unit]
