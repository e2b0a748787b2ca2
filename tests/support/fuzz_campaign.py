"""The reply-fuzz campaign: the real `volley run` against MX hosts that answer at random.

Responsible for: `fuzz_campaign`, shared by tests/integration/test_fuzzed_receivers.py
(small) and bench/fuzz_replies.py (10 000 connections): a mini internet whose every MX
host is a `tests.support.scripted.fuzz` server (each command answered at random: sane
replies, codes of the wrong class, changing multi-line codes, binary garbage, closes,
silence, unsolicited replies, over-long lines, bare LFs), messages dropped in batches
until the receivers have seen the target number of connections, and a `FuzzReport` of
what happened: every recipient's final outcome, what is left in the spool, and the
connections split into those that carried a transaction and those that did not.

The two connection bounds it reports (README "Guarantees"):
  * a connection that carried a transaction (MAIL received) is one entry attempt, each
    logged: with_mail <= entry attempts;
  * a connection that carried none failed before the session was ready (or found no
    work): at most one per worker per MX address per retry step of a failing
    destination, so without_mail <= workers x MX addresses x (duration / shortest step
    + 1).
Not responsible for: asserting (callers do), or anything off 127.0.0.0/8.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.internet import MiniInternet, message
from tests.support.net import wait_for
from tests.support.scripted import ScriptedServer, fuzz
from tests.support.volley import Volley

FINAL = frozenset({"delivered", "bounced", "expired"})
JITTER = 0.2


@dataclass
class FuzzReport:
    target: int
    workers: int
    domains: int
    mx_addresses: int
    step: float
    max_age: float
    duration: float = 0.0
    messages: int = 0
    recipients: int = 0
    connections: int = 0
    with_mail: int = 0
    without_mail: int = 0
    entry_attempts: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    finals: int = 0  # recipients with a final outcome (delivered, bounced, expired)
    unfinished: list[str] = field(default_factory=list)  # recipients without one
    duplicates_final: int = 0  # recipients with more than one final outcome
    left_queued: list[str] = field(default_factory=list)
    internal_errors: int = 0
    quarantined: int = 0
    peak_per_second: int = 0  # connections in the busiest second, all MX hosts
    peak_rss_kb: int = 0

    @property
    def without_mail_bound(self) -> float:
        shortest = self.step * (1 - JITTER)
        return self.workers * self.mx_addresses * (self.duration / shortest + 1)

    def as_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k not in ("unfinished", "left_queued")}
        out["outcomes"] = dict(self.outcomes)
        out["unfinished"] = len(self.unfinished)
        out["left_queued"] = len(self.left_queued)
        out["without_mail_bound"] = round(self.without_mail_bound, 1)
        out["connections_per_second"] = round(self.connections / max(self.duration, 1e-9), 1)
        return out


def fuzz_campaign(
    root: Path,
    *,
    target_connections: int,
    workers: int = 2,
    domains: int = 8,
    seed: int = 1,
    step: float = 0.2,
    max_age: float = 6.0,
    batch: int = 40,
    timeout: float = 900.0,
) -> FuzzReport:
    """Run the campaign under `root`; returns the report once every message dropped has
    an outcome for every recipient (or `timeout` seconds passed)."""
    report = FuzzReport(target_connections, workers, domains, 2 * domains, step, max_age)
    with MiniInternet() as net:
        servers: list[ScriptedServer] = []
        for d in range(domains):
            pair = [net.scripted(fuzz(seed * 1000 + 2 * d + i)) for i in range(2)]
            net.publish(f"f{d}.test", [s.ip for s in pair])
            servers.extend(pair)
        root.mkdir(parents=True, exist_ok=True)
        v = Volley(
            root,
            dns=net.dns.address,
            smtp_port=net.port,
            workers=workers,
            config=_config(step, max_age),
        )
        with v:
            started = time.monotonic()
            deadline = started + timeout
            sent: set[str] = set()  # recipients: each address is used once
            n = 0
            while _connections(servers) < target_connections and time.monotonic() < deadline:
                for _ in range(batch):
                    d = n % domains
                    rcpts = [f"u{n}-{i}@f{d}.test" for i in range(1 + n % 3)]
                    v.drop(message("news@sender.test", rcpts, seq=n))
                    sent.update(rcpts)
                    n += 1
                # The next batch once this one's drops are taken and the queue is short.
                wait_for(
                    lambda: not v.incoming() and len(v.queued()) < batch,
                    timeout=max_age * 4 + 30,
                    message=lambda: f"queue stuck: {len(v.queued())} entries",
                )
                report.peak_rss_kb = max(report.peak_rss_kb, _workers_rss_kb(v))
            wait_for(
                lambda: not v.queued() and _finals(v) >= len(sent),
                timeout=max(1.0, deadline - time.monotonic()) + max_age * 4,
                message=lambda: f"{len(v.queued())} entries left",
            )
            report.duration = time.monotonic() - started
            report.left_queued = v.queued()
            assert v.stop() == 0, v.text_output()[-3000:]
        report.messages = n
        report.recipients = len(sent)
        _account(report, v, servers)
    return report


def _config(step: float, max_age: float) -> dict[str, Any]:
    phases = ("greeting", "ehlo", "mail", "rcpt", "data", "data_block", "data_done", "rset", "quit")
    timeouts = {k: "400ms" for k in phases}  # every phase: silence costs 0.4 s, not 5 min
    timeouts["connect"] = "2s"
    return {
        "smtp": {"idle_timeout": "200ms", "timeouts": timeouts},
        "dsn": {"enabled": False},  # the campaign is about the MX side
        "shutdown": {"drain_timeout": "2s"},
        "domains": {
            "default": {
                "retry_schedule": [f"{step}s"],
                "retry_jitter": JITTER,
                "max_age": f"{max_age}s",
            }
        },
    }


def _connections(servers: list[ScriptedServer]) -> int:
    return sum(s.connections for s in servers)


def _finals(v: Volley) -> int:
    return sum(1 for r in v.log() if r["event"] in FINAL)


def _account(report: FuzzReport, v: Volley, servers: list[ScriptedServer]) -> None:
    log = v.log()
    report.outcomes = Counter(r["event"] for r in log)
    final = Counter(r["rcpt"] for r in log if r["event"] in FINAL)
    received = {r["rcpt"] for r in log if r["event"] == "received"}
    report.finals = len(final)
    report.unfinished = sorted(received - set(final))
    report.duplicates_final = sum(1 for c in final.values() if c > 1)
    report.entry_attempts = len(
        {(r["id"], r["attempt"]) for r in log if r["event"] in FINAL | {"deferred"}}
    )
    report.internal_errors = report.outcomes["internal_error"]
    report.quarantined = report.outcomes["quarantined"]
    times: list[float] = []
    for s in servers:
        times.extend(s.connection_times)
        for conn in s.conns:
            if any(c.upper().startswith("MAIL") for c in conn.commands):
                report.with_mail += 1
            else:
                report.without_mail += 1
    report.connections = len(times)
    per_second = Counter(int(t) for t in times)
    report.peak_per_second = max(per_second.values(), default=0)


def _workers_rss_kb(v: Volley) -> int:
    """Sum of the worker processes' RSS (kB), from /proc."""
    from tests.support.crash import worker_pids

    total = 0
    for pid in worker_pids(v).values():
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total
