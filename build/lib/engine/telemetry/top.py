"""`volley top`: a live terminal view of one running Volley, read from its /metrics.

Responsible for: fetching and parsing the local /metrics text (`metrics.listen`), turning
two scrapes and the time between them into a frame of plain text lines (`render`, a pure
function: rates, queue, a drain progress line with an ETA, the busiest destinations), and
the refresh loop that redraws the terminal with plain ANSI escapes.
Not responsible for: the metrics themselves (engine.telemetry.metrics) or reading the
spool (`volley queue` does, from file names).  It never talks to the engine otherwise, so
it works against any instance whose /metrics it can reach.

No curses: two escape sequences (home + clear) are all a redraw needs, and curses would
add a terminal-database dependency and a mode that breaks `--once` in pipes and tests.
"""

from __future__ import annotations

import shutil
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TextIO

from prometheus_client.parser import text_string_to_metric_families

__all__ = ["Scrape", "fetch", "metrics_url", "parse", "render", "run"]

Labels = tuple[tuple[str, str], ...]
OUTCOMES = ("received", "delivered", "deferred", "bounced", "expired")
CLEAR = "\x1b[H\x1b[2J"  # cursor home, erase screen
BOLD, RESET = "\x1b[1m", "\x1b[0m"
DOMAIN_WIDTH = 32


@dataclass(frozen=True, slots=True)
class Scrape:
    """One /metrics reading: sample name + sorted labels -> value."""

    samples: Mapping[tuple[str, Labels], float]

    def total(self, name: str, **match: str) -> float:
        """Sum of every series of `name` whose labels include `match`."""
        items = match.items()
        return sum(
            v for (n, labels), v in self.samples.items() if n == name and items <= set(labels)
        )

    def by(self, name: str, label: str) -> dict[str, float]:
        """`name`'s values summed per value of `label`."""
        out: dict[str, float] = {}
        for (n, labels), v in self.samples.items():
            if n == name:
                key = dict(labels).get(label)
                if key is not None:
                    out[key] = out.get(key, 0.0) + v
        return out

    def label(self, name: str, label: str) -> str | None:
        """The value of `label` on the first series of `name` (e.g. the build version)."""
        for n, labels in self.samples:
            if n == name:
                return dict(labels).get(label)
        return None


def parse(text: str) -> Scrape:
    samples: dict[tuple[str, Labels], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return Scrape(samples)


# -- formatting ---------------------------------------------------------------------------
def _age(seconds: float) -> str:
    s = int(max(0.0, seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def _bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def _num(v: float) -> str:
    return f"{v:,.0f}"


def _rate(v: float) -> str:
    return f"{v:,.1f}"


def _pct(part: float, whole: float) -> str:
    return f"{100.0 * part / whole:.0f} %" if whole > 0 else "-"


def _bar(fraction: float, width: int = 24) -> str:
    done = round(max(0.0, min(1.0, fraction)) * width)
    return "[" + "#" * done + "." * (width - done) + "]"


# -- the frame ------------------------------------------------------------------------------
def render(
    cur: Scrape,
    prev: Scrape | None,
    elapsed: float,
    *,
    peak: float = 0.0,
    rows: int = 15,
    source: str = "",
) -> list[str]:
    """One frame.  Rates are (cur - prev) / elapsed; without `prev` (the first frame, or
    `--once`) counters are shown as totals since the engine started.  `peak` is the
    largest queue seen since it was last empty: the progress bar's 100 %."""
    rated = prev is not None and elapsed > 0

    def delta(name: str, **match: str) -> float:
        now = cur.total(name, **match)
        if not rated:
            return now
        assert prev is not None
        # A counter that went down means the engine restarted: count from zero.
        before = prev.total(name, **match)
        return (now - before if now >= before else now) / elapsed

    version = cur.label("volley_build_info", "version") or "?"
    lines = [
        f"volley top  {source}  version {version}  workers "
        f"{cur.total('volley_workers_alive'):.0f} alive, "
        f"{cur.total('volley_worker_restarts_total'):.0f} restarts"
    ]
    unit = f"(per second, last {elapsed:.1f} s)" if rated else "(totals since start)"
    outcomes = "   ".join(
        f"{o} {(_rate if rated else _num)(delta(f'volley_{o}_total'))}" for o in OUTCOMES
    )
    lines.append(f"{'sending':<12}{outcomes}   {unit}")

    states = cur.by("volley_queue_entries", "state")
    queued = sum(states.values())
    oldest = cur.by("volley_queue_oldest_age_seconds", "domain").get("_all", 0.0)
    lines.append(
        f"{'queue':<12}{_num(queued)} entries: {_num(states.get('ready', 0))} ready, "
        f"{_num(states.get('waiting', 0))} waiting, {_num(states.get('inflight', 0))} "
        f"in flight; oldest {_age(oldest)}"
    )
    if rated:
        assert prev is not None
        change = (queued - prev.total("volley_queue_entries")) / elapsed
        if change < 0 and queued > 0:
            eta = _age(queued / -change)
            bar = _bar(1.0 - queued / peak) + " " if peak >= queued > 0 else ""
            lines.append(f"{'draining':<12}{bar}{_num(queued)} left, {_rate(-change)}/s, ETA {eta}")
        elif change > 0:
            lines.append(f"{'growing':<12}+{_rate(change)} entries/s")

    dns = cur.by("volley_dns_lookups_total", "result")
    lookups = dns.get("hit", 0.0) + dns.get("miss", 0.0)
    used, free = cur.total("volley_spool_bytes"), cur.total("volley_spool_free_bytes")
    capacity = cur.total("volley_spool_capacity_bytes")
    lines.append(
        f"{'connections':<12}{cur.total('volley_connections_open'):.0f} open, "
        f"{cur.total('volley_connections_idle'):.0f} idle   "
        f"DNS cache hits {_pct(dns.get('hit', 0.0), lookups)}   "
        f"spool {_bytes(free)} free of {_bytes(capacity)} ({_pct(used, capacity)} used)"
    )
    paused = [r for r, v in cur.by("volley_intake_paused", "reason").items() if v > 0]
    if paused:
        lines.append(f"{'INTAKE':<12}paused: {', '.join(sorted(paused))}")

    lines.append("")
    lines.extend(_destinations(cur, delta, rated, rows))
    return lines


def _destinations(cur: Scrape, delta: Callable[..., float], rated: bool, rows: int) -> list[str]:
    depth = cur.by("volley_queue_depth", "domain")
    conns = cur.by("volley_connections_open", "domain")
    idle = cur.by("volley_connections_idle", "domain")
    age = cur.by("volley_queue_oldest_age_seconds", "domain")
    seen = set(depth) | set(conns)
    for o in OUTCOMES:
        seen |= set(cur.by(f"volley_{o}_total", "domain"))
    seen.discard("_all")
    stats = {d: {o: delta(f"volley_{o}_total", domain=d) for o in OUTCOMES[1:4]} for d in seen}
    # "other" (every destination outside the top set) only when something happens there.
    busy = [
        d
        for d in seen
        if d != "other" or depth.get(d, 0) or conns.get(d, 0) or any(stats[d].values())
    ]
    busy.sort(key=lambda d: (d == "other", -depth.get(d, 0.0), -stats[d]["delivered"], d))
    per = "/s" if rated else ""
    head = (
        f"{'destination':<{DOMAIN_WIDTH}} {'queue':>8} {'open':>5} {'idle':>5} "
        f"{'delivered' + per:>12} {'deferred' + per:>11} {'bounced' + per:>10} "
        f"{'deferral':>8} {'oldest':>7}"
    )
    out = [head]
    fmt = _rate if rated else _num
    for d in busy[:rows]:
        s = stats[d]
        attempts = s["delivered"] + s["deferred"] + s["bounced"]
        name = d if len(d) <= DOMAIN_WIDTH else d[: DOMAIN_WIDTH - 1] + "~"
        out.append(
            f"{name:<{DOMAIN_WIDTH}} {_num(depth.get(d, 0)):>8} {conns.get(d, 0):>5.0f} "
            f"{idle.get(d, 0):>5.0f} {fmt(s['delivered']):>12} {fmt(s['deferred']):>11} "
            f"{fmt(s['bounced']):>10} {_pct(s['deferred'], attempts):>8} "
            f"{_age(age.get(d, 0.0)) if depth.get(d, 0) else '-':>7}"
        )
    if len(busy) > rows:
        out.append(f"... {len(busy) - rows} more")
    return out


# -- I/O --------------------------------------------------------------------------------------
def metrics_url(listen: str) -> str:
    """http://host:port/metrics for a `metrics.listen` value; a wildcard address is
    reached over loopback."""
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/metrics"


def fetch(url: str, timeout: float = 5.0) -> Scrape:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return parse(resp.read().decode("utf-8"))


def run(
    url: str,
    *,
    interval: float = 1.0,
    once: bool = False,
    out: TextIO | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """The refresh loop; `--once` prints a single frame without escapes.  Ctrl-C ends."""
    out = out if out is not None else sys.stdout  # looked up now: tests capture stdout
    # A scrape of a 50-destination instance (~1 900 series) costs the supervisor ~50 ms
    # of CPU (measured): refreshing faster than twice a second would be a real load.
    interval = max(0.5, interval)
    if once:
        try:
            cur = fetch(url)
        except (OSError, ValueError) as e:  # unreachable, or not a /metrics page
            print(f"volley top: cannot read {url}: {e}", file=sys.stderr)
            return 1
        out.write("\n".join(render(cur, None, 0.0, source=url)) + "\n")
        return 0
    tty = out.isatty()
    prev: Scrape | None = None
    prev_at = 0.0
    peak = 0.0
    try:
        while True:
            rows = max(5, shutil.get_terminal_size().lines - 10)
            try:
                cur = fetch(url)
            except (OSError, ValueError) as e:  # unreachable, or not a /metrics page
                frame = [f"volley top: cannot read {url}: {e}", "retrying..."]
                prev = None
            else:
                now = clock()
                queued = cur.total("volley_queue_entries")
                peak = 0.0 if queued == 0 else max(peak, queued)
                frame = render(cur, prev, now - prev_at, peak=peak, rows=rows, source=url)
                prev, prev_at = cur, now
            if tty:
                frame[0] = BOLD + frame[0] + RESET
            out.write(CLEAR + "\n".join(frame) + "\n")
            out.flush()
            sleep(interval)
    except KeyboardInterrupt:
        out.write("\n")
        return 0
