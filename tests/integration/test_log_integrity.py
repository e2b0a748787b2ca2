"""Delivery-log integrity: complete lines after kill -9, and a torn last line tolerated.

Three kill -9s of everything while two workers log as fast as they deliver: after each
one, every line of the log except possibly the last is a complete JSON record. Then a
torn line is appended by hand, as a kill in the middle of a write(2) would leave it:
`read_log` skips it, `volley queue` still works, and Volley started again on that log
loses none of its own records (the first one must not be glued onto the torn line), and
the fragment does not stay behind as a broken line in the middle of the log.
"""

from __future__ import annotations

import json
import subprocess
import sys

from engine.telemetry.eventlog import read_log
from tests.support.crash import log_lines_problems, restart
from tests.support.internet import message
from tests.support.net import wait_for

N = 600
TORN = b'{"ts":1.0,"event":"delivered","worker":0,"id":"6612fbab1cf046f4056'


def test_log_lines_survive_kill9_and_a_torn_tail(net, volley) -> None:
    domains = [f"l{i}.test" for i in range(3)]
    receivers = [net.domain(d)[0] for d in domains]
    v = volley(workers=2)

    def got() -> int:
        return sum(len(r.messages) for r in receivers)

    for i in range(N):
        v.drop(message("news@sender.test", [f"u{i}@{domains[i % 3]}"], seq=i))
    for point in (N // 6, N // 3, N // 2):
        wait_for(lambda p=point: got() >= p, timeout=60, interval=0.005)  # type: ignore[misc]
        v.kill()
        problems = log_lines_problems(v.log_path)
        assert not problems, problems[:5]
        restart(v)
    wait_for(
        lambda: (
            {r["rcpt"] for r in v.events("delivered")}
            >= {f"u{i}@{domains[i % 3]}" for i in range(N)}
        ),
        timeout=60,
        message=lambda: f"{got()} received",
    )
    assert v.stop() == 0
    assert not log_lines_problems(v.log_path)
    raw = v.log_path.read_bytes()
    assert raw.endswith(b"\n")
    complete = len(list(read_log(v.log_path)))
    assert complete == raw.count(b"\n")

    # A torn last line, as a kill in the middle of a write(2) leaves it.
    with open(v.log_path, "ab") as f:
        f.write(TORN)
    assert len(list(read_log(v.log_path))) == complete
    q = subprocess.run(
        [sys.executable, "-m", "engine", "queue", "--config", str(v.config_path), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert q.returncode == 0, q.stderr
    assert json.loads(q.stdout) == {}

    # Volley appends after the torn line without losing its own first record.
    restart(v)
    v.drop(message("news@sender.test", ["after@l0.test"], seq=N + 1))
    wait_for(lambda: receivers[0].delivered_to("after@l0.test"), timeout=30)
    assert v.stop() == 0
    records = list(read_log(v.log_path))
    after = [(r["event"], r["rcpt"]) for r in records if r.get("rcpt") == "after@l0.test"]
    assert after == [("received", "after@l0.test"), ("delivered", "after@l0.test")], (
        after,
        v.log_path.read_bytes()[-600:],
    )
    assert len(records) == complete + 2
    # And the file is whole lines again: the torn fragment did not become a bad line inside.
    assert not log_lines_problems(v.log_path), log_lines_problems(v.log_path)
