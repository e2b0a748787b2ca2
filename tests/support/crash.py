"""Helpers for the crash, recovery and hostile-input scenarios (issue 3, "nothing lost").

Responsible for:
  * finding one `volley run`'s worker processes by shard, killing one, waiting for the
    supervisor's replacement, and reading a process's start time (to prove what ran when);
  * restarting a killed `Volley` on the same spool (its output file already says
    "running", so `Volley.start` alone cannot tell that the new process is up);
  * scraping /metrics, listing what a spool still holds, reading Message-IDs out of what
    the receivers got, naming drops so that they land on a chosen worker shard;
  * mounting a small tmpfs for the disk-full scenario (failing loudly when not permitted);
  * what the kill -9 run (tests.support.kill9_run) builds on.

Not responsible for: starting the mini internet or Volley (tests.support.internet,
tests.support.volley), or asserting anything a scenario decides (the tests do; the kill
run returns a report and raises only when a promise is broken).

Everything stays on loopback: the only network use is /metrics on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import time
import urllib.request
from collections import defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from engine.runtime.intake import shard_of
from spool import CorruptEntry
from tests.support.net import wait_for
from tests.support.receiver import Receiver
from tests.support.volley import Volley, decode_live, live_entries

__all__ = [
    "Pair",
    "drop_name_for_shard",
    "kill_worker",
    "leftovers",
    "log_lines_problems",
    "message_id",
    "metric",
    "pending_pairs",
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


def pending_pairs(spool: Path) -> set[Pair]:
    """(Message-ID, recipient) of every recipient a live entry still lists as pending: what
    a restart sends (again).  Raises AssertionError on a torn entry, as queued_pending."""
    out: set[Pair] = set()
    for d, e in live_entries(spool):
        try:
            meta, _ = decode_live(d, e)
        except FileNotFoundError:
            continue  # finished meanwhile
        except CorruptEntry as exc:
            raise AssertionError(f"torn entry left in the queue: {d}/{e.name}: {exc}") from exc
        out.update((str(meta.get("msgid")), rcpt) for rcpt in meta["rcpts"])
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
