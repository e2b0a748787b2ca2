"""kill -9 of `volley run` right after the listener's 250s: 200 messages over 10
concurrent SMTP sessions, the whole of Volley SIGKILLed the moment the last 250 arrives,
started again — every message is delivered, once.  The receiver is down until the
restart, so no message can have left before the kill: all 200 came from the spool."""

from __future__ import annotations

import smtplib
import threading

from tests.support.internet import message
from tests.support.net import wait_for
from tests.support.submit import listening, port_of

SESSIONS = 10
PER_SESSION = 20


def test_every_message_answered_250_survives_kill9(net, volley) -> None:
    rx = net.domain("dest.test", start=False)[0]
    v = volley(workers=2, config=listening())
    port = port_of(v)
    accepted: list[str] = []
    lock = threading.Lock()
    killed = threading.Event()
    errors: list[BaseException] = []

    def session(k: int) -> None:
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
                for i in range(PER_SESSION):
                    rcpt = f"s{k}m{i}@dest.test"
                    s.sendmail("a@sender.test", [rcpt], message("a@sender.test", [rcpt], seq=i))
                    with lock:
                        accepted.append(rcpt)
                        if len(accepted) == SESSIONS * PER_SESSION:
                            v.kill()  # right after the last 250: nothing has had time to settle
                            killed.set()
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=session, args=(k,)) for k in range(SESSIONS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors and killed.is_set(), errors
    assert len(accepted) == SESSIONS * PER_SESSION

    rx.start()
    v.start()
    wait_for(
        lambda: len({m.rcpt_tos[0] for m in rx.messages}) >= len(accepted),
        timeout=60,
        message=lambda: f"{len(rx.messages)} of {len(accepted)} delivered after the restart",
    )
    assert sorted(m.rcpt_tos[0] for m in rx.messages) == sorted(accepted)  # each once
    wait_for(lambda: v.queued() == [], timeout=10)
    assert v.stop() == 0
