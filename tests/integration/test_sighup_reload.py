"""Issue #9: SIGHUP reloads the configuration while mail flows.

SIGHUP once killed the supervisor (status 129).  Now it reads the file again: a raised
`max_connections` applies to the connections opened from then on, without dropping the
queued mail or the connection already open; a file that does not validate is refused
with one line and the running configuration stays.
"""

from __future__ import annotations

import signal

from tests.support.internet import message
from tests.support.net import wait_for

N = 6


def test_sighup_raises_max_connections_while_mail_flows(net, volley) -> None:
    (rx,) = net.domain("slow.test")
    v = volley(
        workers=1,
        config={
            "smtp": {"timeouts": {"rcpt": "120s"}},  # `stall` holds RCPT until released
            "domains": {"slow.test": {"max_connections": 1, "max_messages_per_connection": 1}},
        },
    )
    for i in range(N):
        v.drop(message("news@sender.test", [f"stall-{i}@slow.test"], seq=i))
    wait_for(lambda: rx.stalled_count == 1 and v.count("received") == N, timeout=20, message=v.log)
    assert rx.peak_connections == 1

    # A file that does not validate: refused, nothing changes, the process lives.
    good = v.config_path.read_text()
    v.config_path.write_text(good + '\n[domains."bad.test"]\nmax_connections = -1\n')
    v.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "reload refused" in v.text_output(), timeout=10, message=v.text_output)
    assert "domains.bad.test.max_connections" in v.text_output()
    assert v.proc.poll() is None

    v.config["domains"]["slow.test"]["max_connections"] = 3
    v.write_config()
    v.proc.send_signal(signal.SIGHUP)
    wait_for(
        lambda: rx.stalled_count == 3, timeout=20, message=lambda: f"{rx!r}\n{v.text_output()}"
    )
    assert "configuration reloaded: domains.slow.test.max_connections" in v.text_output()
    assert v.proc.poll() is None

    rx.release_stalled()
    wait_for(lambda: len(rx.messages) == N, timeout=30, message=v.log)
    assert rx.peak_connections == 3
    wait_for(lambda: v.count("delivered") == N, timeout=10, message=v.log)  # the log lags
    assert v.count("deferred") == 0  # the connection open at the reload was not dropped
    assert v.stop() == 0
