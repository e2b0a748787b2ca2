"""The receiver drops the connection after the data, before replying: deferred, sent again.

The first copy did arrive (the receiver recorded it): this is the at-least-once duplicate
that every MTA has, and the log says the message may have been delivered.
"""

from __future__ import annotations

from tests.support.internet import message
from tests.support.net import wait_for


def test_connection_dropped_mid_data_is_retried(net, volley) -> None:
    (rx,) = net.domain("drop.test")
    v = volley(workers=1)
    v.drop(message("news@sender.test", ["dropdataonce-a@drop.test"]))
    wait_for(lambda: v.count("delivered") == 1, timeout=30, message=lambda: f"{v.log()}")
    copies = rx.delivered_to("dropdataonce-a@drop.test")
    assert [c.dropped for c in copies] == [True, False]
    (d,) = v.events("deferred")
    assert d["enhanced"] == "4.4.2" and "may have been delivered" in d["text"]
    assert v.stop() == 0
