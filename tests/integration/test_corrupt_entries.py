"""Power-cut damage to queued segments: detected, moved to corrupt/, the rest flows.

Volley is stopped with entries queued (their destination was down; each deferral rewrote
its entry into a one-entry segment), then three segment files are damaged the way a power
cut or bad disk would: one truncated at a random offset, one with a byte flipped at a
random offset, one overwritten with garbage. On restart each goes to `<spool>/corrupt/`
with a `.reason` beside it — the whole segment when its header or index is hit (at start),
the entry's record when only the record is (when it is loaded) — the process never
crashes (no worker restart), every other entry is delivered, and each quarantine is logged.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

from spool.segment import segment_name
from tests.support.crash import metric, restart
from tests.support.internet import message
from tests.support.net import wait_for
from tests.support.volley import Volley, live_entries

N = 12


def alone(v: Volley) -> dict[str, Path]:
    """entry name -> its segment file, for the entries that are alone in their segment."""
    by_segment: dict[Path, list[str]] = {}
    for d, e in live_entries(v.spool):
        by_segment.setdefault(d / segment_name(e.seq), []).append(e.name)
    return {names[0]: seg for seg, names in by_segment.items() if len(names) == 1}


def test_damaged_entries_are_quarantined(net, volley) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    receivers = net.domain("later.test", start=False)
    v = volley(workers=2, config={"domains": {"default": {"retry_schedule": ["200ms"]}}})
    for i in range(N):
        v.drop(message("news@sender.test", [f"u{i}@later.test"], seq=i))
    # Each entry has been tried once (connection refused), and a deferral rewrites an entry
    # into a segment of its own: wait until at least 3 entries have one.
    wait_for(
        lambda: v.count("deferred") >= N and v.incoming() == [] and len(alone(v)) >= 3,
        timeout=30,
        message=lambda: f"{v.log()}",
    )
    assert v.stop() == 0
    v_queued = v.queued()
    assert len(v_queued) == N
    single = alone(v)
    names = rng.sample(sorted(single), 3)
    truncated, flipped, garbage = (single[n] for n in names)

    size = truncated.stat().st_size
    cut = rng.randrange(0, size)
    os.truncate(truncated, cut)
    data = bytearray(flipped.read_bytes())
    at = rng.randrange(len(data))
    data[at] ^= 1 << rng.randrange(8)
    flipped.write_bytes(bytes(data))
    garbage.write_bytes(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 4096))))
    where = f"seed {seed}: truncated at {cut} of {size}, bit flipped at byte {at} of {len(data)}"

    for r in receivers:
        r.start()
    restart(v)
    corrupt = v.spool / "corrupt"
    wait_for(
        # The log lags the receiver by up to one flush (250 ms): wait for both.
        lambda: (
            len(receivers[0].messages) == N - 3
            and len(list(corrupt.iterdir())) == 6
            and v.count("delivered") == N - 3
        ),
        timeout=30,
        message=lambda: f"{where}; {sorted(os.listdir(corrupt))}; {v.log()[-10:]}",
    )
    kept = sorted(p.name for p in corrupt.iterdir() if not p.name.endswith(".reason"))
    # Each damaged segment is kept whole (named <k>-<segment>) or as its entry's record.
    damaged_files = {
        f"{seg.parent.name}-{seg.name}" for seg in (truncated, flipped, garbage)
    } | set(names)
    assert len(kept) == 3 and set(kept) <= damaged_files, (kept, where)
    for name in kept:
        reason = (corrupt / f"{name}.reason").read_text()
        assert "segment" in reason or "cannot decode spool entry" in reason, (reason, where)
    # Whatever was kept of the flipped segment is its bytes, not a rewrite.
    if f"{flipped.parent.name}-{flipped.name}" in kept:
        assert (corrupt / f"{flipped.parent.name}-{flipped.name}").read_bytes() == bytes(data)
    delivered = sorted(m.rcpt_tos[0] for m in receivers[0].messages)
    ids = {n.split("@")[0] for n in v_queued} - {n.split("@")[0] for n in names}
    assert sorted(r["rcpt"] for r in v.events("delivered")) == delivered
    assert {r["id"] for r in v.events("delivered")} == ids
    assert v.queued() == []
    quarantined = sorted(r.get("file") or r["id"] for r in v.events("quarantined"))
    assert len(quarantined) == 3, (quarantined, where)
    # Startup never crashed: no worker was restarted.
    assert "exited" not in v.text_output(), v.text_output()
    assert (metric(v.metrics_port, "volley_worker_restarts_total") or 0) == 0
    wait_for(
        lambda: metric(v.metrics_port, "volley_quarantined_total", reason="corrupt") == 3,
        timeout=5,
        message=lambda: f"{metric(v.metrics_port, 'volley_quarantined_total', reason='corrupt')}",
    )
    assert v.stop() == 0
