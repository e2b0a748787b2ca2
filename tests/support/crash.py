"""Helpers for the crash, recovery and hostile-input scenarios (issue 3, "nothing lost").

Responsible for:
  * finding one `volley run`'s worker processes by shard, killing one, waiting for the
    supervisor's replacement, and reading a process's start time (to prove what ran when);
  * restarting a killed `Volley` on the same spool (its output file already says
    "running", so `Volley.start` alone cannot tell that the new process is up);
  * scraping /metrics, listing what a spool still holds, reading Message-IDs out of what
    the receivers got, naming drops so that they land on a chosen worker shard;
  * mounting a small tmpfs for the disk-full scenario (failing loudly when not permitted);
  * the kill -9 run shared by tests/integration/test_crash_kill9_all.py and
    bench/soak_kill9.py: deliver a batch while SIGKILLing everything at random instants,
    and account for every (Message-ID, recipient) pair and every duplicate.

Not responsible for: starting the mini internet or Volley (tests.support.internet,
tests.support.volley), or asserting anything a scenario decides (the tests do; the kill
run returns a report and raises only when a promise is broken).

Everything stays on loopback: the only network use is /metrics on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import signal
import subprocess
import time
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from engine.runtime.intake import shard_of
from spool import CorruptEntry
from tests.support.internet import MiniInternet, message
from tests.support.net import wait_for
from tests.support.receiver import Receiver
from tests.support.volley import Volley, decode_live, live_entries

__all__ = [
    "KillRunReport",
    "Pair",
    "drop_name_for_shard",
    "kill9_run",
    "kill_worker",
    "leftovers",
    "log_lines_problems",
    "message_id",
    "metric",
    "process_start_time",
    "received_copies",
    "received_pairs",
    "restart",
    "scrape",
    "tmpfs",
    "wait_new_worker",
    "worker_pids",
]

MetricKey = tuple[str, tuple[tuple[str, str], ...]]
Pair = tuple[str, str]  # (Message-ID, recipient)

_MSGID = re.compile(rb"^Message-ID:[ \t]*(<[^>\r\n]*>)", re.IGNORECASE | re.MULTILINE)


# -- processes ---------------------------------------------------------------------------
def worker_pids(v: Volley) -> dict[int, int]:
    """shard -> pid of every live worker of `v` (read from /proc, like Volley.kill)."""
    assert v.proc is not None
    sup = v.proc.pid
    try:
        kids = Path(f"/proc/{sup}/task/{sup}/children").read_text().split()
    except OSError:
        return {}
    out: dict[int, int] = {}
    for kid in kids:
        try:
            argv = Path(f"/proc/{kid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue  # exited between the two reads
        if b"engine.runtime.worker" in argv and b"--shard" in argv:
            out[int(argv[argv.index(b"--shard") + 1])] = int(kid)
    return out


def kill_worker(v: Volley, shard: int) -> int:
    """SIGKILL worker `shard` of `v`; return the pid killed."""
    pid = wait_for(
        lambda: worker_pids(v).get(shard, 0),
        timeout=20,
        message=lambda: f"no worker {shard}: {worker_pids(v)}",
    )
    os.kill(pid, signal.SIGKILL)
    return pid


def wait_new_worker(v: Volley, shard: int, old_pid: int, timeout: float = 30.0) -> int:
    """Wait until the supervisor runs a worker `shard` other than `old_pid`; return its pid."""

    def new_pid() -> int:
        pid = worker_pids(v).get(shard, 0)
        return 0 if pid == old_pid else pid

    return wait_for(
        new_pid,
        timeout=timeout,
        message=lambda: f"worker {shard} not restarted: {worker_pids(v)}\n{v.text_output()}",
    )


def process_start_time(pid: int) -> float:
    """Wall-clock time (epoch s) at which `pid` started, to the kernel's 10 ms tick.

    stat(5) gives the start in clock ticks since boot; CLOCK_BOOTTIME is the same clock,
    so the offset to wall time is taken here, not from /proc/stat's whole-second btime."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    ticks = int(fields[19])  # field 22 of stat(5), counted after "pid (comm) "
    offset = time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)
    return offset + ticks / os.sysconf("SC_CLK_TCK")


def restart(v: Volley) -> Volley:
    """Start `v` again on the same spool after a kill or a stop; wait until it runs."""
    assert v.proc is None or v.proc.poll() is not None, "still running"
    offset = v.output.stat().st_size if v.output.exists() else 0
    v.start()
    wait_for(
        lambda: b"running" in v.output.read_bytes()[offset:] or v.proc.poll() is not None,  # type: ignore[union-attr]
        timeout=30,
        message=lambda: f"volley did not restart:\n{v.text_output()[-3000:]}",
    )
    assert v.proc is not None and v.proc.poll() is None, v.text_output()[-3000:]
    return v


def output_since(v: Volley, offset: int) -> str:
    return v.output.read_bytes()[offset:].decode(errors="replace") if v.output.exists() else ""


# -- metrics -----------------------------------------------------------------------------
def scrape(port: int) -> dict[MetricKey, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    out: dict[MetricKey, float] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def metric(port: int, name: str, **labels: str) -> float | None:
    """One sample's value, or None when the series does not exist."""
    return scrape(port).get((name, tuple(sorted(labels.items()))))


# -- the spool ---------------------------------------------------------------------------
def leftovers(spool: Path) -> dict[str, list[str]]:
    """What a spool still holds: live entries and segment files in queue/<k>/ (a segment
    outlives its last entry only until that entry's removal), files in tmp/<k>/, drops (dot
    files included) in incoming/, and everything in corrupt/. Shard lock files and the
    removal journals are not entries."""
    out: dict[str, list[str]] = {"queue": [], "tmp": [], "incoming": [], "corrupt": []}
    out["queue"] += [f"{d.name}/{e.name}" for d, e in live_entries(spool)]
    for k_dir in sorted((spool / "queue").glob("*")):
        if k_dir.is_dir():
            out["queue"] += [f"{k_dir.name}/{p.name}" for p in sorted(k_dir.glob("*.seg"))]
    for k_dir in sorted((spool / "tmp").glob("*")):
        if k_dir.is_dir():
            out["tmp"] += [f"{k_dir.name}/{p.name}" for p in sorted(k_dir.iterdir())]
    for name in ("incoming", "corrupt"):
        d = spool / name
        if d.exists():
            out[name] = sorted(p.name for p in d.iterdir())
    return out


def queued_pending(spool: Path) -> dict[str, list[str]]:
    """entry id -> recipients still pending, for every live entry in queue/<k>/ (decoded).

    Raises AssertionError naming the entry if one does not decode: the write protocol
    promises that a crash never leaves a torn entry in queue/."""
    out: dict[str, list[str]] = {}
    for d, e in live_entries(spool):
        try:
            meta, _ = decode_live(d, e)
        except FileNotFoundError:
            continue  # finished meanwhile
        except CorruptEntry as exc:
            raise AssertionError(f"torn entry left in the queue: {d}/{e.name}: {exc}") from exc
        out[e.name.split("@")[0]] = list(meta["rcpts"])
    return out


# -- drops and receipts ------------------------------------------------------------------
def drop_name_for_shard(shard: int, workers: int, stem: str) -> str:
    """A drop file name `<stem>-<n>.eml` that intake hands to worker `shard`."""
    for n in range(10_000):
        name = f"{stem}-{n}.eml"
        if shard_of(name, workers) == shard:
            return name
    raise AssertionError("unreachable: crc32 spreads names over the shards")


def message_id(data: bytes) -> str | None:
    m = _MSGID.search(data.split(b"\r\n\r\n", 1)[0])
    return m.group(1).decode() if m else None


Copy = tuple[float, str]  # (receipt time, identity of the transaction that carried it)


def received_copies(receivers: Iterable[Receiver]) -> dict[Pair, list[Copy]]:
    """(Message-ID, recipient) -> every copy received, oldest first, over all receivers.

    A copy's identity names the SMTP transaction (receiver, connection, receipt number), so
    the two recipients of one transaction share it."""
    out: dict[Pair, list[Copy]] = defaultdict(list)
    for r in receivers:
        for n, m in enumerate(r.messages):
            mid = message_id(m.data) or "?"
            for rcpt in m.rcpt_tos:
                out[(mid, rcpt)].append((m.at, f"{r.ip}#{m.conn_id}#{n}"))
    for copies in out.values():
        copies.sort()
    return out


def received_pairs(receivers: Iterable[Receiver]) -> dict[Pair, list[float]]:
    """(Message-ID, recipient) -> receipt times (wall clock), over all receivers."""
    return {pair: [at for at, _ in c] for pair, c in received_copies(receivers).items()}


def log_lines_problems(path: Path) -> list[str]:
    """Every line of a delivery log that is not a complete JSON record, except a torn last
    line (no newline) which kill -9 may leave, and empty lines. Empty when the log is
    intact."""
    if not path.exists():
        return []
    data = path.read_bytes()
    lines = data.split(b"\n")
    problems = []
    # `lines[-1]` is b"" when the file ends with "\n", else the torn last line (allowed).
    for i, line in enumerate(lines[:-1], 1):
        if not line:
            continue  # an empty line holds no record (read_log skips it too)
        try:
            rec = json.loads(line)
        except ValueError:
            problems.append(f"line {i}: {line[:200]!r}")
            continue
        if not isinstance(rec, dict) or "event" not in rec:
            problems.append(f"line {i} is not a record: {line[:200]!r}")
    return problems


# -- a small filesystem ------------------------------------------------------------------
@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """Mount a tmpfs of `size` (e.g. "2m") on `path` for the block; always unmounted.

    Raises AssertionError with the reason when mounting is not permitted: the disk-full
    scenario must fail, never be skipped, where it cannot run (CI runs as root)."""
    path.mkdir(parents=True, exist_ok=True)
    got = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if got.returncode != 0:
        raise AssertionError(
            f"cannot mount a tmpfs on {path} (the disk-full test needs root or "
            f"CAP_SYS_ADMIN): exit {got.returncode}: {got.stderr.strip()}"
        )
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)


def fill(path: Path, chunk: int = 4096) -> int:
    """Write `path` until the filesystem is full (ENOSPC); return the bytes written."""
    written = 0
    block = b"\0" * chunk
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        while True:
            try:
                n = os.write(fd, block)
            except OSError as e:
                if e.errno == 28:  # ENOSPC
                    break
                raise
            if n == 0:
                break
            written += n
    finally:
        os.close(fd)
    return written


# -- the kill -9 run -----------------------------------------------------------------------
@dataclass(slots=True)
class KillRunReport:
    """What a kill -9 run found. Times are wall clock (epoch s)."""

    seed: int
    messages: int
    pairs: int  # (Message-ID, recipient) pairs that had to arrive
    kills: list[float] = field(default_factory=list)  # when each SIGKILL of everything ended
    restarts: list[float] = field(default_factory=list)  # when each new `volley run` was spawned
    kill_receipts: list[int] = field(default_factory=list)  # pairs received at each kill
    logged_and_queued: list[int] = field(default_factory=list)  # per kill (write-ahead gap)
    torn_tails: list[bool] = field(default_factory=list)  # log ended mid-line at each kill
    duplicates: int = 0  # extra copies, over all (Message-ID, recipient) pairs
    # Transactions received before kill i+1 and sent again after it (one transaction may
    # carry two recipients, so this counts in the unit connections limit).
    resent_per_kill: list[int] = field(default_factory=list)
    in_flight_capacity: int = 0  # most transactions open at once (sum of max_connections)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "messages": self.messages,
            "pairs": self.pairs,
            "kills": len(self.kills),
            "kill_receipts": self.kill_receipts,
            "logged_and_queued_at_kill": self.logged_and_queued,
            "torn_log_tails": sum(self.torn_tails),
            "duplicate_pairs": self.duplicates,
            "resent_transactions_per_kill": self.resent_per_kill,
            "resent_transactions": sum(self.resent_per_kill),
            "in_flight_capacity": self.in_flight_capacity,
            "seconds": round(self.seconds, 2),
        }


def kill_run_messages(
    n: int, domains: Sequence[str], rng: random.Random
) -> list[tuple[bytes, list[str]]]:
    """`n` messages with unique Message-IDs: most to one recipient; about 8 % to two
    recipients of one domain (one entry, one transaction), 8 % to two domains (two
    entries); about 6 % of recipients are `flaky1-`/`flaky2-` so retries are in play."""
    out = []
    for i in range(n):
        kind = rng.random()
        d1, d2 = rng.sample(list(domains), 2)

        def rcpt(j: int, d: str, i: int = i) -> str:
            r = rng.random()
            prefix = "flaky1-" if r < 0.04 else "flaky2-" if r < 0.06 else ""
            return f"{prefix}u{i}x{j}@{d}"

        if kind < 0.08:
            to = [rcpt(0, d1), rcpt(1, d1)]
        elif kind < 0.16:
            to = [rcpt(0, d1), rcpt(1, d2)]
        else:
            to = [rcpt(0, d1)]
        out.append((message("news@sender.test", to, seq=i), to))
    return out


def kill9_run(
    net: MiniInternet,
    make_volley: Callable[[dict[str, Any]], Volley],
    *,
    messages: int,
    kills: int,
    domains: int = 4,
    max_connections: int = 4,
    seed: int | None = None,
    deadline: float = 150.0,
    progress: Callable[[str], None] = lambda s: None,
) -> KillRunReport:
    """Deliver `messages` to `domains` receivers while SIGKILLing the whole of Volley
    `kills` times at random instants, restarting it on the same spool each time.

    The instants are random points of progress: a kill happens as soon as the receivers
    have got a randomly drawn number of pairs (a draw may be 0: right after a restart,
    during recovery and intake). Raises AssertionError when a promise is broken: a pair
    never arrives, the spool keeps anything, an entry is torn, a duplicate is not
    explained by a kill (two copies between the same two kills), the log is not intact.
    Duplicates explained by kills are counted, not refused: the caller bounds them.
    """
    seed = random.randrange(2**32) if seed is None else seed
    rng = random.Random(seed)
    names = [f"k{i}.test" for i in range(domains)]
    receivers = [net.domain(d)[0] for d in names]
    batch = kill_run_messages(messages, names, rng)
    msgid_of = {}
    expected: set[Pair] = set()
    for data, to in batch:
        mid = message_id(data)
        assert mid is not None
        msgid_of[mid] = data
        expected.update((mid, r) for r in to)
    report = KillRunReport(seed=seed, messages=messages, pairs=len(expected))
    report.in_flight_capacity = domains * max_connections
    v = make_volley({"domains": {"default": {"max_connections": max_connections}}})
    start = time.monotonic()
    end = start + deadline

    def got() -> int:
        return sum(len(r.messages) for r in receivers)

    # Drops go in while Volley runs, so intake is busy during the first kills.
    for data, _ in batch:
        v.drop(data)
    # Random progress points, spread over the first 90 % of the run.
    points = sorted(rng.randrange(0, int(len(expected) * 0.9)) for _ in range(kills))
    for i, point in enumerate(points):
        wait_for(
            lambda p=point: got() >= p,  # type: ignore[misc]
            timeout=max(1.0, end - time.monotonic()),
            interval=0.005,
            message=lambda i=i: f"kill {i}: {got()} received; {v.text_output()[-2000:]}",  # type: ignore[misc]
        )
        v.kill()
        report.kills.append(time.time())
        report.kill_receipts.append(got())
        problems = log_lines_problems(v.log_path)
        assert not problems, f"after kill {i}: torn lines inside the log: {problems[:5]}"
        report.torn_tails.append(_torn_tail(v.log_path))
        report.logged_and_queued.append(_logged_and_queued(v))
        left = leftovers(v.spool)
        progress(
            f"kill {i + 1}/{kills} at {report.kill_receipts[-1]} receipts; "
            f"{len(left['queue'])} queued, {len(left['incoming'])} drops, "
            f"{len(left['tmp'])} tmp; logged+queued {report.logged_and_queued[-1]}"
        )
        report.restarts.append(time.time())
        restart(v)

    def complete() -> bool:
        return expected <= received_pairs(receivers).keys() and not any(leftovers(v.spool).values())

    wait_for(
        complete,
        timeout=max(1.0, end - time.monotonic()),
        interval=0.1,
        message=lambda: _missing(expected, receivers, v),
    )
    assert v.stop() == 0
    # A torn last line left by a kill must not swallow the next incarnation's first record.
    problems = log_lines_problems(v.log_path)
    assert not problems, (
        f"records glued to a torn line ({sum(report.torn_tails)} kills left the log ending "
        f"mid-line): {problems[:3]}"
    )
    # Every pair's delivery is in the log, and nothing else happened to any message.
    missing_log = sorted(expected - _delivered_pairs(v))
    assert not missing_log, f"received but never logged delivered: {missing_log[:10]}"
    report.seconds = time.monotonic() - start
    bad = [r for r in v.log() if r["event"] in ("bounced", "expired", "rejected")]
    assert not bad, f"unexpected outcomes: {bad[:5]}"
    assert not any(leftovers(v.spool).values()), leftovers(v.spool)
    assert not list((v.spool / "rejected").iterdir())

    copies = received_copies(receivers)
    assert set(copies) == expected, sorted(set(copies) ^ expected)[:10]
    retaken = _retaken_after_delivery(v)
    assert not retaken, (
        f"{len(retaken)} drops were taken again after their message had been delivered "
        f"(a kill between the entries' commit and the drop's unlink, then delivery of the "
        f"scanned entry before intake re-read the drop): {retaken[:5]}"
    )
    # Which incarnation of Volley sent each copy: one received after restart s was spawned
    # (and before restart s+1) was sent by incarnation s or, if it sat in the receiver's
    # socket buffer across the kill, by s-1; never by a later one. The spawn time is the
    # boundary, not the kill time: a copy sent just before a kill is often *recorded* just
    # after it (the receivers are threads of this busy test process). Two copies in one
    # segment would be a resend with no crash to explain it.
    resent: list[set[str]] = [set() for _ in report.kills]
    unexplained = []
    for pair, cs in copies.items():
        segments = [sum(1 for k in report.restarts if k < at) for at, _ in cs]
        if len(set(segments)) != len(segments):
            unexplained.append((pair, [at for at, _ in cs], segments))
            continue
        for s, (_, txn) in zip(segments[:-1], cs[:-1], strict=True):
            resent[s].add(txn)  # received before kill s+1, sent again after it
    assert not unexplained, (
        f"duplicates with no kill between the copies: {unexplained[:5]}; "
        f"kills {report.kills}; restarts {report.restarts}"
    )
    report.duplicates = sum(len(c) - 1 for c in copies.values())
    report.resent_per_kill = [len(t) for t in resent]
    return report


def _torn_tail(path: Path) -> bool:
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        if f.tell() == 0:
            return False
        f.seek(-1, os.SEEK_END)
        return f.read(1) != b"\n"


def _delivered_pairs(v: Volley) -> set[Pair]:
    return {(r["msgid"], r["rcpt"]) for r in v.log() if r["event"] == "delivered"}


def _retaken_after_delivery(v: Volley) -> list[tuple[str, str, float, float]]:
    """(msgid, rcpt, delivered at, received again at) for every recipient whose drop was
    queued (`received`) again after a `delivered` record: that second entry is new, so it
    is sent again, a duplicate no kill explains by itself."""
    delivered: dict[Pair, float] = {}
    out = []
    for r in v.log():
        key = (str(r.get("msgid")), str(r.get("rcpt")))
        if r["event"] == "delivered":
            delivered.setdefault(key, float(r["ts"]))
        elif r["event"] == "received" and key in delivered:
            out.append((key[0], key[1], delivered[key], float(r["ts"])))
    return out


def _logged_and_queued(v: Volley) -> int:
    """Recipients logged delivered whose entry still lists them as pending.

    The outcome is logged before the spool changes (write-ahead), so a kill between the
    two leaves this; the entry is then sent again: one of the in-flight duplicates."""
    delivered: defaultdict[str, set[str]] = defaultdict(set)
    for r in v.log():
        if r["event"] == "delivered":
            delivered[r["id"]].add(r["rcpt"])
    return sum(
        1
        for eid, rcpts in queued_pending(v.spool).items()
        for rcpt in rcpts
        if rcpt in delivered.get(eid, ())
    )


def _missing(expected: set[Pair], receivers: Sequence[Receiver], v: Volley) -> str:
    pairs = received_pairs(receivers)
    missing = sorted(expected - pairs.keys())
    left = leftovers(v.spool)
    counts = Counter(r["event"] for r in v.log())
    spool = {k: (len(x), x[:3]) for k, x in left.items()}
    return (
        f"{len(missing)} pairs never arrived, e.g. {missing[:5]}; spool {spool}; "
        f"log {dict(counts)}; output:\n{v.text_output()[-3000:]}"
    )
