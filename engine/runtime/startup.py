"""A worker's start-up scan: the shard's queued entries into its work queue, compactly.

Responsible for: what a worker does with its shard's entries once `recover` has read them
and before it says "ready" — counting a crash against the entries the previous worker
died delivering (the POISON_CRASHES-th crash quarantines one: Mailman's MAX_BAK_COUNT),
then queueing everything: the start-up index (spool.compact) as rows of the work queue's
backlog (engine.sched.backlog), which become entry objects only when handed out, and the
few other entries (names the index cannot hold, rewritten crash counts) as objects.
Not responsible for: recovery itself and the index (spool.shard, spool.scan), an
interrupted intake batch (taken before this: engine.runtime.intake), or delivery.

Why a module of its own: the worker wires the pipeline (engine.runtime.worker, ~490 lines);
the start-up is the one place that knows both the spool's index and the queue's backlog,
and bench/queue_memory.py measures exactly this function.
Measured (bench/queue_memory.py, 100 000 entries in one shard, 50 domains): 391 bytes
and ~12 µs an entry with an object per entry at every layer; 51 bytes and ~3.6 µs as rows.
"""

from __future__ import annotations

from collections.abc import Callable, Collection

from engine.sched.queue import WorkQueue
from engine.telemetry.eventlog import EventLog
from spool import CorruptEntry, EntryRef, ShardQueue, id_time

__all__ = ["POISON_CRASHES", "Quarantine", "count_crashes", "load_queue"]

POISON_CRASHES = 3  # Mailman's MAX_BAK_COUNT: a third crash quarantines the entry

# Outcomes.quarantine(ref, reason, kind, now, queued=False): corrupt/ with a reason, logged.
Quarantine = Callable[[EntryRef, str, str, float], None]


def load_queue(
    shard: ShardQueue,
    queue: WorkQueue,
    now: float,
    *,
    crashed: Collection[str] = (),
    quarantine: Quarantine | None = None,
    log: EventLog | None = None,
) -> int:
    """Queue every live entry of `shard` (after its `recover`) in `queue`; returns how many
    were queued. `crashed`: names the previous worker was delivering when it died (its
    in-flight journal), each counted a crash (`count_crashes`) before it is queued."""
    index, refs = shard.scan_compact()
    if crashed:
        if quarantine is None or log is None:
            raise ValueError("counting crashes needs quarantine and log")
        suspects = [r for r in refs if r.name in crashed]
        refs = [r for r in refs if r.name not in crashed]
        rows = sorted(r for r in map(index.live_row, crashed) if r >= 0)
        suspects += [index.ref(row) for row in rows]
        # Rewriting or quarantining an entry clears its row's `live` flag: the backlog
        # below skips it, and the rewritten entry is queued as an object.
        refs += count_crashes(shard, suspects, now, quarantine, log)
    queued = 0
    for ref in refs:
        queued += queue.add(ref, ref.mtime, now, born=id_time(ref.id))
    return queued + queue.add_backlog(index, now)


def count_crashes(
    shard: ShardQueue,
    refs: list[EntryRef],
    now: float,
    quarantine: Quarantine,
    log: EventLog,
) -> list[EntryRef]:
    """The previous worker of this shard died delivering `refs`: count a crash against each
    (a `crashes` counter in its meta, rewritten); the POISON_CRASHES-th crash quarantines
    it. Returns the entries that stay queued, as rewritten."""
    keep: list[EntryRef] = []
    for ref in refs:
        try:
            meta, body = shard.load(ref)
        except (CorruptEntry, FileNotFoundError) as e:
            reason = getattr(e, "reason", "vanished")
            quarantine(ref, f"cannot decode spool entry: {reason}", "corrupt", now)
            continue
        crashes = int(meta.get("crashes", 0)) + 1
        if crashes >= POISON_CRASHES:
            quarantine(
                ref,
                f"poison: the worker crashed {crashes} times while delivering this entry",
                "poison",
                now,
            )
            continue
        keep.append(shard.rewrite(ref, {**meta, "crashes": crashes}, body, ref.mtime))
        log.add("crash_counted", now, id=ref.id, domain=ref.domain, crashes=crashes)
    log.flush()
    return keep
