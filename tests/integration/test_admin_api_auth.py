"""The admin API answers nobody without the token: no token or a wrong one is HTTP 401
and changes nothing; the token file is created 0600 at first start; the CLI says in one
line what is wrong when the token is refused or Volley is not running."""

from __future__ import annotations

import json
import os
import stat
import urllib.error
import urllib.request
from typing import Any

from tests.support.volley import to_toml


def call(v, method: str, path: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{v.admin_port}{path}", data=data, method=method)
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=30) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as e:
        with e:
            assert e.headers["Content-Type"].startswith("application/json")
            if e.code == 401:
                assert e.headers["WWW-Authenticate"] == 'Bearer realm="volley"'
            return e.code, json.load(e)


def test_calls_without_the_token_are_refused(net, volley, tmp_path) -> None:
    v = volley(workers=1)
    token_file = v.spool / "admin.token"
    assert stat.S_IMODE(os.stat(token_file).st_mode) == 0o600
    token = token_file.read_text().strip()
    assert len(token) >= 43  # 32 random bytes, base64url

    for bad in (None, "", "x" * len(token), token[:-1]):
        for method, path, body in (
            ("GET", "/v1/suspensions", None),
            ("POST", "/v1/suspend", {"domain": "x.test"}),
            ("POST", "/v1/delete", {"all": True}),
            ("GET", "/v1/queue", None),
        ):
            status, got = call(v, method, path, body, token=bad)
            assert status == 401, (bad, path, got)
            assert "bearer token" in got["error"]
    status, got = call(v, "GET", "/v1/suspensions", token=token)
    assert status == 200 and got["suspensions"] == []  # the refused suspend did nothing
    assert v.count("suspended") == 0

    assert call(v, "GET", "/v1/nothing", token=token)[0] == 404
    assert call(v, "GET", "/v1/suspend", token=token)[0] == 405
    status, got = call(v, "POST", "/v1/suspend", {"domain": "not a domain"}, token=token)
    assert status == 400 and "domain" in got["error"]
    status, got = call(v, "POST", "/v1/bounce", {"reason": "no selector"}, token=token)
    assert status == 400 and "selector is required" in got["error"]

    # The CLI with someone else's token: one line, exit 1.
    other = tmp_path / "other.token"
    other.write_text("not-the-token\n")
    cfg = tmp_path / "other.toml"
    cfg.write_text(to_toml({**v.config, "admin": {**v.config["admin"], "token_file": str(other)}}))
    got = v.cli("flush", config=cfg)
    assert got.returncode == 1 and "refused the token" in got.stderr
    assert len(got.stderr.strip().splitlines()) == 1 and "Traceback" not in got.stderr
    assert v.count("flushed") == 0

    assert v.stop() == 0
    got = v.cli("resume", "x.test")  # nothing runs now
    assert got.returncode == 1 and "is `volley run` running" in got.stderr
    assert len(got.stderr.strip().splitlines()) == 1
