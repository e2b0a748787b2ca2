"""Power-cut damage to queued entries: detected on load, moved to corrupt/, the rest flows.

Volley is stopped with entries queued (their destination was down), then three entry files
are damaged the way a power cut or bad disk would: one truncated at a random offset, one
with a byte flipped at a random offset, one overwritten with garbage. On restart each is
moved to `<spool>/corrupt/` with a `.reason` beside it when it is loaded, the process
never crashes (no worker restart), and every other entry is delivered.
"""

from __future__ import annotations

import os
import random

from tests.support.crash import metric, restart
from tests.support.internet import message
from tests.support.net import wait_for

N = 12


def test_damaged_entries_are_quarantined(net, volley) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    receivers = net.domain("later.test", start=False)
    v = volley(workers=2, config={"domains": {"default": {"retry_schedule": ["200ms"]}}})
    for i in range(N):
        v.drop(message("news@sender.test", [f"u{i}@later.test"], seq=i))
    # Each entry has been tried once (connection refused), so each is in queue/<k>/.
    wait_for(
        lambda: v.count("deferred") >= N and v.incoming() == [],
        timeout=30,
        message=lambda: f"{v.log()}",
    )
    assert v.stop() == 0
    entries = sorted(v.queued())
    assert len(entries) == N
    truncated, flipped, garbage = rng.sample(entries, 3)

    size = truncated.stat().st_size
    cut = rng.randrange(0, size)
    os.truncate(truncated, cut)
    data = bytearray(flipped.read_bytes())
    at = rng.randrange(len(data))
    data[at] ^= 1 << rng.randrange(8)
    flipped.write_bytes(bytes(data))
    garbage.write_bytes(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 4096))))
    damaged = {truncated.name: "truncated", flipped.name: "flipped", garbage.name: "garbage"}
    where = f"seed {seed}: truncated at {cut} of {size}, bit flipped at byte {at}"

    for r in receivers:
        r.start()
    restart(v)
    corrupt = v.spool / "corrupt"
    wait_for(
        lambda: len(receivers[0].messages) == N - 3 and len(list(corrupt.iterdir())) == 6,
        timeout=30,
        message=lambda: f"{where}; {sorted(os.listdir(corrupt))}; {v.log()[-10:]}",
    )
    assert sorted(p.name for p in corrupt.iterdir()) == sorted(
        [*damaged, *(f"{n}.reason" for n in damaged)]
    ), where
    for name, how in damaged.items():
        reason = (corrupt / f"{name}.reason").read_text()
        assert "cannot decode spool entry" in reason, (how, reason, where)
    # The flipped file moved byte for byte (evidence is kept, not rewritten).
    assert (corrupt / flipped.name).read_bytes() == bytes(data)
    delivered = sorted(m.rcpt_tos[0] for m in receivers[0].messages)
    ids = {p.name.split("@")[0] for p in entries} - {n.split("@")[0] for n in damaged}
    assert sorted(r["rcpt"] for r in v.events("delivered")) == delivered
    assert {r["id"] for r in v.events("delivered")} == ids
    assert v.queued() == []
    quarantined = {r["id"]: r["reason"] for r in v.events("quarantined")}
    assert sorted(quarantined) == sorted(n.split("@")[0] for n in damaged), (quarantined, where)
    # Startup never crashed: no worker was restarted.
    assert "exited" not in v.text_output(), v.text_output()
    assert (metric(v.metrics_port, "volley_worker_restarts_total") or 0) == 0
    assert v.stop() == 0
