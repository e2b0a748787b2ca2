"""Disk full: intake pauses and leaves the drops in incoming/, delivery goes on, a log
record and a metric say why, and intake resumes by itself when space returns.

The spool lives on a 4 MB tmpfs this test mounts (root is needed; CI runs as root, and
the test fails, never skips, where mounting is not permitted). Forty small messages are
queued and held in flight by the receiver (`stall`). Two 300 KB drops are written as dot
files, a filler file takes every free byte, and then the drops are renamed into place:
they fit (a rename needs no space) but their entries cannot be written. The forty are
then released and delivered while the disk is full; removing their entries frees at most
40 pages (160 KB), still too little for one 300 KB entry, so intake stays paused until
the filler is deleted. Nothing is lost and nothing is sent twice.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from tests.support.crash import fill, leftovers, metric, tmpfs
from tests.support.internet import message
from tests.support.net import wait_for
from tests.support.receiver import Receiver
from tests.support.volley import Volley

SMALL = 40
BIG = 2
BIG_BODY = "x" * 76 + "\r\n"  # 78-octet lines: 3 900 of them make a ~300 KB message


def _paused(port: int) -> float | None:
    return metric(port, "volley_intake_paused", reason="disk_full")


def _pauses(port: int) -> float | None:
    return metric(port, "volley_intake_pauses_total", reason="disk_full")


def test_disk_full_pauses_intake_and_resumes(net, volley, tmp_path: Path) -> None:
    (rx,) = net.domain("d.test")
    with tmpfs(tmp_path / "fs", "4m") as fs:
        config = {
            "spool": {"path": str(fs / "spool")},
            "smtp": {"timeouts": {"rcpt": "60s"}},
            # One message per connection: ten stalls in flight at once, thirty queued.
            "domains": {"default": {"max_messages_per_connection": 1}},
        }
        v = volley(workers=1, start=False, config=config)
        v.spool = fs / "spool"
        try:
            _scenario(v, rx, fs)
        finally:
            if v.proc is not None and v.proc.poll() is None:
                v.kill()


def _scenario(v: Volley, rx: Receiver, fs: Path) -> None:
    v.start()
    small = [f"stall-{i}@d.test" for i in range(SMALL)]
    for i, rcpt in enumerate(small):
        v.drop(message("news@sender.test", [rcpt], seq=i))
    wait_for(
        lambda: v.count("received") == SMALL and rx.stalled_count == 10,
        timeout=30,
        message=lambda: f"{rx!r} {v.log()[-5:]}",
    )
    incoming = v.spool / "incoming"
    big = [f"big-{i}@d.test" for i in range(BIG)]
    for i, rcpt in enumerate(big):
        data = message("news@sender.test", [rcpt], seq=100 + i, body=BIG_BODY * 3900)
        assert len(data) > 300_000
        (incoming / f".big-{i}.eml.tmp").write_bytes(data)
    filler = fs / "filler"
    fill(filler)
    for i in range(BIG):
        os.rename(incoming / f".big-{i}.eml.tmp", incoming / f"big-{i}.eml")

    # Intake pauses and says why; the drops stay where they are.
    wait_for(
        lambda: list(v.events("intake_paused")),
        timeout=30,
        message=lambda: f"{v.log()[-5:]}\n{v.text_output()}",
    )
    (paused,) = v.events("intake_paused")
    assert "space" in paused["reason"].lower() or "full" in paused["reason"].lower(), paused
    assert v.incoming() == ["big-0.eml", "big-1.eml"]

    # Delivery of what is queued goes on meanwhile.
    rx.release_stalled()
    wait_for(
        lambda: v.count("delivered") == SMALL,
        timeout=30,
        message=lambda: f"{rx!r} {v.log()[-5:]}\n{v.text_output()}",
    )
    assert sorted(m.rcpt_tos[0] for m in rx.messages) == sorted(small)
    assert v.incoming() == ["big-0.eml", "big-1.eml"], "intake went on with the disk full"
    assert v.count("received") == SMALL
    # The metrics say so too (collected now, asserted at the end so that a missing metric
    # does not hide the rest of the behaviour).
    gauge_seen = _wait_value(lambda: _paused(v.metrics_port), 1.0)
    pauses_seen = _wait_value(lambda: _pauses(v.metrics_port), 1.0, at_least=True)

    # Space returns: intake resumes by itself and everything is delivered once.
    filler.unlink()
    wait_for(
        lambda: all(rx.delivered_to(r) for r in big),
        timeout=30,
        message=lambda: f"{v.incoming()} {v.log()[-5:]}\n{v.text_output()}",
    )
    gauge_after = _wait_value(lambda: _paused(v.metrics_port), 0.0)
    assert v.stop() == 0
    assert sorted(m.rcpt_tos[0] for m in rx.messages) == sorted(small + big)
    assert all(len(rx.delivered_to(r)) == 1 for r in small + big)
    assert not any(leftovers(v.spool).values()), leftovers(v.spool)
    assert not list((v.spool / "rejected").iterdir())
    assert "exited" not in v.text_output(), v.text_output()
    assert gauge_seen == 1.0, f'volley_intake_paused{{reason="disk_full"}} was {gauge_seen}'
    assert pauses_seen is not None and pauses_seen >= 1.0, (
        f'volley_intake_pauses_total{{reason="disk_full"}} was {pauses_seen}'
    )
    assert gauge_after == 0.0, f'volley_intake_paused{{reason="disk_full"}} stayed {gauge_after}'


def _wait_value(
    read: Callable[[], float | None], want: float, *, at_least: bool = False, timeout: float = 10.0
) -> float | None:
    """Poll a metric until it has `want` (or more); return the last value seen (None when
    the series never existed)."""
    last: list[float | None] = [None]

    def ok() -> bool:
        last[0] = read()
        value = last[0]
        return value is not None and (value >= want if at_least else value == want)

    try:
        wait_for(ok, timeout=timeout, interval=0.1)
    except AssertionError:
        pass
    return last[0]
