"""Per-domain queue summary for operators and tools, from segment indexes only.

Responsible for: `queue_summary`, which counts what is queued per destination domain across
every shard of a spool, as `mailq` does for Postfix, from the segment indexes only (no
record is read): the domain and the creation time come from the entry name, the next
attempt from the index.
Not responsible for: anything that needs the meta (recipients, attempt counts, last
error): tools that want those decode entries with `spool.record.decode_meta`.
Safe to run while workers run: a segment unlinked meanwhile is skipped (spool.scan.scan_dir).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

from spool.ids import ID_LENGTH, id_time
from spool.layout import Layout, domain_of_entry
from spool.scan import scan_dir

__all__ = ["DomainSummary", "queue_summary"]


@dataclass(frozen=True, slots=True)
class DomainSummary:
    """What is queued for one destination domain.

    queued: entries due now (next attempt <= now); deferred: entries waiting (> now);
    oldest_id_time: creation time of the oldest entry (from its id, epoch seconds);
    next_attempt: the earliest future attempt among the deferred ones, None if none waits.
    """

    queued: int
    deferred: int
    oldest_id_time: float
    next_attempt: float | None


def queue_summary(spool_root: str | os.PathLike[str], now: float) -> dict[str, DomainSummary]:
    """Summarise every queue/<k> of the spool at `spool_root` as of `now` (epoch seconds).

    Returns {domain: DomainSummary}, only for domains with at least one entry. Names that
    are not entry names are ignored, as `ShardQueue.scan` ignores them.
    """
    layout = Layout(Path(spool_root))
    queued: dict[str, int] = {}
    deferred: dict[str, int] = {}
    oldest: dict[str, float] = {}
    next_at: dict[str, float] = {}
    for k in layout.existing_shards(layout.queue_root):
        scan = scan_dir(layout.queue(k))  # rows, not an object per entry: 10 M fit
        ix = scan.index
        live = chain(
            ((ix.domain(r), ix.due[r], ix.born(r)) for r in range(len(ix))),
            ((domain_of_entry(n), d, id_time(n[:ID_LENGTH])) for n, d in scan.due.items()),
        )
        for domain, mtime, created in live:
            if domain not in oldest or created < oldest[domain]:
                oldest[domain] = created
            if mtime <= now:
                queued[domain] = queued.get(domain, 0) + 1
            else:
                deferred[domain] = deferred.get(domain, 0) + 1
                if domain not in next_at or mtime < next_at[domain]:
                    next_at[domain] = mtime
    return {
        domain: DomainSummary(
            queued=queued.get(domain, 0),
            deferred=deferred.get(domain, 0),
            oldest_id_time=oldest[domain],
            next_attempt=next_at.get(domain),
        )
        for domain in sorted(oldest)
    }
