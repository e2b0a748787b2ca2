"""Issue #15: refusals and a 421 in the middle of pipelined transactions.

With `smtp.pipeline_depth = 2` the next message's MAIL/RCPT/DATA are on the wire while
the previous one's final reply is outstanding, so every refusal below lands mid-pipeline.
The receiver (one connection at a time, as the queue drains back to back):
  * `reject-*` recipients get `550 5.1.1` at RCPT, and the DATA pipelined behind them
    `554 5.5.1 no valid recipients` (RFC 2920): no content may follow, and the next
    message must start behind a RSET;
  * `later-*` recipients get `451 4.7.1` at RCPT on the first connection only;
  * the 6th MAIL of the first connection gets `421 4.7.0` and the connection closes,
    while the message before it is still waiting for its final reply.
Every message ends delivered exactly once at the receiver or bounced; each recipient
has one outcome per attempt (none lost, none counted twice); the one cut by the 421 is
deferred and delivered on the next connection (and one that waited behind it, not yet
sent, is deferred too when the 421 came in a read of its own); no content of a refused
message is sent.
"""

from __future__ import annotations

from collections import Counter, defaultdict

from tests.support.crash import message_id
from tests.support.internet import message
from tests.support.net import wait_for
from tests.support.scripted import CLOSE, Conn, standard

MESSAGES = 20


def picky(conn: Conn, line: str | None) -> bytes:
    if line is None:
        return standard(conn, line)
    verb = line.split(" ", 1)[0].split(":", 1)[0].upper()
    if verb == "MAIL":
        mails = sum(c.upper().startswith("MAIL") for c in conn.commands)
        if conn.number == 1 and mails == 6:
            return b"421 4.7.0 too busy, closing (test)\r\n" + CLOSE
    if verb == "RCPT":
        if "<reject-" in line:
            return b"550 5.1.1 no such user (test)\r\n"
        if "<later-" in line and conn.number == 1:
            return b"451 4.7.1 try again later (test)\r\n"
    if verb == "DATA":
        last_mail = max(i for i, c in enumerate(conn.commands) if c.upper().startswith("MAIL"))
        rcpts = [c for c in conn.commands[last_mail:] if c.upper().startswith("RCPT")]
        if all("<reject-" in r or ("<later-" in r and conn.number == 1) for r in rcpts):
            return b"554 5.5.1 no valid recipients (test)\r\n"
    return standard(conn, line)


def rcpt(i: int) -> str:
    kind = "reject-" if i % 5 == 1 else "later-" if i % 5 == 3 else ""
    return f"{kind}u{i}@picky.test"


def test_refusals_and_a_421_mid_pipeline_decide_each_message_once(net, volley) -> None:
    mx = net.scripted(picky)
    net.publish("picky.test", [mx.ip])
    v = volley(
        workers=1,
        config={
            "smtp": {"pipeline_depth": 2},
            "dsn": {"enabled": False},  # the sender's domain does not exist here
            "domains": {
                "default": {"max_connections": 1, "retry_schedule": ["1s"], "retry_jitter": 0}
            },
        },
        start=False,
    )
    (v.spool / "incoming").mkdir(parents=True, exist_ok=True)
    sent = {}
    for i in range(MESSAGES):
        data = message("news@sender.test", [rcpt(i)], seq=i)
        sent[message_id(data)] = rcpt(i)
        v.drop(data)
    v.start()
    rejected = {r for r in sent.values() if r.startswith("reject-")}
    wait_for(
        lambda: (
            v.count("delivered") == MESSAGES - len(rejected) and v.count("bounced") == len(rejected)
        ),
        timeout=45,
        message=v.log,
    )
    assert v.stop() == 0

    # At the receiver: every accepted message exactly once, no content of a refused one.
    got = Counter(message_id(m) for m in mx.messages)
    assert set(got) == {mid for mid, r in sent.items() if r not in rejected}
    assert set(got.values()) == {1}
    # In the log: one outcome per recipient and attempt, attempts numbered 1, 2, ...
    outcomes: defaultdict[str, list[tuple[int, str]]] = defaultdict(list)
    for r in v.log():
        if r["event"] in ("delivered", "deferred", "bounced"):
            outcomes[r["rcpt"]].append((r["attempt"], r["event"]))
    for address, seen in outcomes.items():
        assert [a for a, _ in seen] == list(range(1, len(seen) + 1)), (address, seen)
        assert seen[-1][1] == ("bounced" if address in rejected else "delivered"), seen
    # Bounced once, never retried after; a message still waiting behind the 421'd one may
    # have been deferred first ("before this transaction was sent"), then bounced.
    assert all([e for _, e in outcomes[r]].count("bounced") == 1 for r in rejected)
    unsent = [r for r in v.events("deferred") if "before this transaction was sent" in r["text"]]
    assert all(r["code"] == 451 for r in unsent)
    deferred = list(v.events("deferred"))
    later = [r for r in deferred if r["rcpt"].startswith("later-")]
    assert later and all(r["code"] == 451 and "4.7.1" in r["text"] for r in later)
    (cut,) = [r for r in deferred if r["code"] == 421]  # the one the 421 answered
    assert cut["rcpt"] == rcpt(5) and "too busy" in cut["text"]
    # The first connection: 6 MAILs, then closed; the RSET after each 554.
    first = mx.conns[0]
    mails = [c for c in first.commands if c.upper().startswith("MAIL")]
    assert len(mails) == 6
    after_554 = [
        first.commands[i + 1]
        for i, c in enumerate(first.commands[:-1])
        if c.upper() == "DATA" and i + 1 < len(first.commands)
    ]
    assert "RSET" in [c.upper() for c in after_554]
    assert len(mx.conns) >= 2
