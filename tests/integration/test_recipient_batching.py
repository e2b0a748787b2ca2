"""Recipients of one domain travel in one transaction, split at max_recipients_per_transaction."""

from __future__ import annotations

from tests.support.internet import message
from tests.support.net import wait_for


def test_one_transaction_per_domain_and_chunking(net, volley) -> None:
    (a,) = net.domain("a.test")
    (b,) = net.domain("b.test")
    (c,) = net.domain("c.test")
    v = volley(workers=2, config={"domains": {"c.test": {"max_recipients_per_transaction": 2}}})
    a_rcpts = [f"u{i}@a.test" for i in range(5)]
    c_rcpts = [f"u{i}@c.test" for i in range(5)]
    data = message("news@sender.test", a_rcpts[:3], cc=["x@b.test", *c_rcpts], bcc=a_rcpts[3:])
    v.drop(data)
    wait_for(
        lambda: a.messages and b.messages and len(c.messages) >= 3,
        timeout=30,
        message=lambda: f"{a!r} {b!r} {c!r}",
    )
    assert len(a.messages) == 1 and sorted(a.messages[0].rcpt_tos) == sorted(a_rcpts)
    assert [m.rcpt_tos for m in b.messages] == [("x@b.test",)]
    assert sorted(len(m.rcpt_tos) for m in c.messages) == [1, 2, 2]
    assert sorted(r for m in c.messages for r in m.rcpt_tos) == sorted(c_rcpts)
    # Bcc never reaches any receiver.
    for m in (*a.messages, *b.messages, *c.messages):
        assert b"Bcc:" not in m.data and b"u4@a.test" not in m.data.split(b"\r\n\r\n")[0]
    assert v.stop() == 0
