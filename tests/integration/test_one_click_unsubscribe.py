"""RFC 8058 one-click unsubscribe end to end: with `[unsubscribe]` configured, a message
leaves with its recipient's own List-Unsubscribe and List-Unsubscribe-Post, both covered
by its DKIM signature (an independent verifier passes it); a GET of the link (what a link
scanner does) shows a page and suppresses nothing; a POST exactly as mailbox providers
send it answers 200, and the next message to that recipient from that sender is
suppressed.  The endpoint is reached as a reverse proxy would reach it (url_base is the
public https:// name; the test connects to the loopback listener)."""

from __future__ import annotations

import re
import urllib.request
from pathlib import Path

from engine.auth.dkim import load_key
from engine.auth.keygen import keygen
from tests.support.crash import metric
from tests.support.dkim_check import mailauth_verify, publish_key
from tests.support.internet import message
from tests.support.net import free_port, wait_for

BASE = "https://unsub.sender.test"


def test_one_click_post_unsubscribes_and_a_get_does_not(net, volley, tmp_path: Path) -> None:
    x = net.domain("x.test")[0]
    key = keygen("sender.test", "ed2026", "ed25519", 0, tmp_path)
    publish_key(net.dns, load_key(key, "sender.test", "ed2026"))
    port = free_port(["127.0.0.1"])
    v = volley(
        config={
            "dkim": {"sender.test": {"selector": "ed2026", "key": str(key)}},
            "unsubscribe": {
                "listen": f"127.0.0.1:{port}",
                "url_base": BASE,
                "mailto": "unsubscribe@bounces.sender.test",
            },
        }
    )
    assert "created the unsubscribe key" in v.text_output()
    news = message("news@sender.test", ["reader@x.test"], seq=1).replace(
        b"Subject: hello", b"List-Id: Weekly <weekly.sender.test>\r\nSubject: hello"
    )
    v.drop(news)
    wait_for(lambda: len(x.messages) == 1, timeout=30, message=v.text_output)
    sent = x.messages[0].data
    assert b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n" in sent
    link = re.search(rb"<(https://unsub\.sender\.test/u/[A-Za-z0-9_-]+)>", sent)
    assert link is not None
    assert b"<mailto:unsubscribe@bounces.sender.test?subject=unsubscribe%20" in sent
    [result] = mailauth_verify(sent, net.dns)
    assert result.result == "pass", result
    signed = re.search(rb"h=([^;]+);", sent.replace(b"\r\n", b"").replace(b" ", b""))
    assert signed is not None and b"list-unsubscribe:list-unsubscribe-post" in signed.group(1)
    url = link.group(1).decode().replace(BASE, f"http://127.0.0.1:{port}")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    # A link scanner's GET: a confirmation page, nothing suppressed.
    with opener.open(url, timeout=10) as r:
        assert r.status == 200 and b'method="post"' in r.read()
    v.drop(message("news@sender.test", ["reader@x.test"], seq=2))
    wait_for(lambda: len(x.messages) == 2, timeout=30, message=v.text_output)
    assert v.count("suppression_added") == 0

    # The mailbox provider's one-click POST (RFC 8058 §3.2): no cookie, no redirect.
    req = urllib.request.Request(
        url,
        data=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        method="POST",
    )
    with opener.open(req, timeout=10) as r:
        assert r.status == 200 and r.headers.get("Set-Cookie") is None
        assert r.geturl() == url  # not redirected
    [added] = v.events("suppression_added")
    assert (added["entry"], added["scope"], added["source"]) == (
        "reader@x.test",
        "sender.test",
        "unsubscribe",
    )
    assert added["list"] == "weekly.sender.test" and added["client"] == "127.0.0.1"
    v.drop(message("news@sender.test", ["reader@x.test"], seq=3))
    wait_for(lambda: v.count("suppressed") == 1, timeout=30, message=v.text_output)
    [sup] = v.events("suppressed")
    assert sup["source"] == "unsubscribe" and sup["rcpt"] == "reader@x.test"
    assert len(x.messages) == 2
    for result, n in (("unsubscribed", 1), ("page", 1)):
        wait_for(
            lambda result=result, n=n: (
                metric(v.metrics_port, "volley_unsubscribe_requests_total", result=result) == n
            ),
            timeout=10,
        )
    # Two entries got a link; the third message had no entry left to give one.
    wait_for(
        lambda: metric(v.metrics_port, "volley_unsubscribe_headers_total", result="added") == 2,
        timeout=10,
    )
    assert v.stop() == 0
