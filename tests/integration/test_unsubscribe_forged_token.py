"""A forged unsubscribe token suppresses nothing: a token re-aimed at another address, one
signed with another key, and garbage are answered 404/400, and the recipients they name
keep getting mail."""

from __future__ import annotations

import base64
import re
import urllib.error
import urllib.request

from engine.unsubscribe.token import Keyring, make_token
from tests.support.crash import metric
from tests.support.internet import message
from tests.support.net import free_port, wait_for


def post(url: str) -> int:
    req = urllib.request.Request(
        url,
        data=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        method="POST",
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=10) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        e.close()
        return int(e.code)


def test_forged_tokens_suppress_nothing(net, volley) -> None:
    x = net.domain("x.test")[0]
    port = free_port(["127.0.0.1"])
    v = volley(
        config={"unsubscribe": {"listen": f"127.0.0.1:{port}", "url_base": "https://u.test"}}
    )
    v.drop(message("news@sender.test", ["ann@x.test"], seq=1))
    wait_for(lambda: len(x.messages) == 1, timeout=30, message=v.text_output)
    token = re.search(rb"https://u\.test/u/([A-Za-z0-9_-]+)", x.messages[0].data)
    assert token is not None
    raw = bytearray(base64.urlsafe_b64decode(token.group(1) + b"=" * (-len(token.group(1)) % 4)))
    at = raw.index(b"ann@")
    raw[at : at + 3] = b"bob"  # Ann's link, aimed at Bob
    reaimed = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    other_key = make_token(Keyring((b"x" * 64,)), "bob@x.test", "sender.test")
    base = f"http://127.0.0.1:{port}/u/"
    assert post(base + reaimed) == 404
    assert post(base + other_key) == 404
    assert post(base + "not-a-token") == 400
    v.drop(message("news@sender.test", ["bob@x.test", "ann@x.test"], seq=2))
    wait_for(lambda: len(x.messages) == 2, timeout=30, message=v.text_output)
    assert sorted(x.messages[1].rcpt_tos) == ["ann@x.test", "bob@x.test"]
    assert v.count("suppression_added") == 0 and v.count("suppressed") == 0
    assert metric(v.metrics_port, "volley_unsubscribe_requests_total", result="forged") == 2
    assert metric(v.metrics_port, "volley_unsubscribe_requests_total", result="malformed") == 1
    # The two-recipient entry got no link (a token names one recipient), and said so.
    assert b"List-Unsubscribe" not in x.messages[1].data
    wait_for(lambda: v.count("unsubscribe_skipped") == 1, timeout=10)
    assert v.stop() == 0
