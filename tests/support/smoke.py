"""A smoke run: a batch of messages through a started Volley, then a clean stop.

Responsible for: `delivers_cleanly`, shared by the scenarios that start `volley run` in
unusual ways (from the systemd and Docker working directories): it drops messages,
waits until the receiver has every one, stops Volley, and checks its output says it ran
its workers and nothing crashed.
Not responsible for: how Volley was started (tests.support.volley) or the receivers.
"""

from __future__ import annotations

from tests.support.internet import message
from tests.support.net import wait_for
from tests.support.receiver import Receiver
from tests.support.volley import Volley

__all__ = ["delivers_cleanly"]


def delivers_cleanly(v: Volley, rx: Receiver, domain: str, *, n: int = 20, workers: int = 2) -> str:
    """Deliver `n` messages to `rx` (MX of `domain`) through `v`; returns the output."""
    rcpts = [f"user{i}@{domain}" for i in range(n)]
    for i, rcpt in enumerate(rcpts):
        v.drop(message("news@sender.test", [rcpt], seq=i))
    wait_for(
        lambda: all(rx.delivered_to(r) for r in rcpts),
        timeout=30,
        message=lambda: f"{len(rx.messages)} of {n} received:\n{v.text_output()[-3000:]}",
    )
    assert v.stop() == 0
    out = v.text_output()
    assert f"running {workers} workers" in out, out
    assert "Traceback" not in out and "exited" not in out, out
    return out
