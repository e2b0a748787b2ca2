"""SIGHUP and the listener: relay_networks and the limits apply to new sessions at once;
the listening address needs a restart (Volley says so), and the old one keeps serving."""

from __future__ import annotations

import signal
import smtplib

import pytest

from tests.support.net import free_port, wait_for
from tests.support.submit import listening, port_of

STRANGER = ("127.0.0.2", 0)


def test_sighup_applies_relay_networks_not_the_address(net, volley) -> None:
    rx = net.domain("dest.test")[0]
    v = volley(workers=2, config=listening(relay_networks=["127.0.0.1/32"]))
    port = port_of(v)
    with smtplib.SMTP("127.0.0.1", port, source_address=STRANGER) as s:
        with pytest.raises(smtplib.SMTPSenderRefused):
            s.sendmail("a@s.test", ["x@dest.test"], b"Subject: 1\r\n\r\nx\r\n")

    v.config["smtpd"]["relay_networks"] = ["127.0.0.1/32", "127.0.0.2/32"]
    v.config["smtpd"]["listen"] = [f"127.0.0.1:{free_port(['127.0.0.1'])}"]
    v.write_config()
    assert v.proc is not None
    v.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "smtpd.listen changed too" in v.text_output(), timeout=10)
    assert "smtpd.relay_networks" in v.text_output()

    def relayed() -> bool:
        with smtplib.SMTP("127.0.0.1", port, source_address=STRANGER) as s:
            try:
                s.sendmail("a@s.test", ["x@dest.test"], b"Subject: 2\r\n\r\nx\r\n")
            except smtplib.SMTPSenderRefused:
                return False  # a worker not reconfigured yet
            return True

    wait_for(relayed, timeout=10)
    wait_for(lambda: len(rx.messages) >= 1, timeout=20)
    assert v.stop() == 0
