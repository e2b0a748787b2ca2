"""`volley suppress add|remove|list|check|import|export` against the running `volley run`
(through its admin API: the supervisor is the list's one writer) and the API itself with
its bearer token; then the same commands on the file while Volley is stopped."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from tests.support.net import wait_for


def api(v, method: str, path: str, body: dict | None = None, token: str | None = None):
    req = urllib.request.Request(
        f"http://127.0.0.1:{v.admin_port}{path}",
        data=None if body is None else json.dumps(body).encode(),
        method=method,
    )
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=10) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        with e:
            return e.code, json.load(e)


def test_suppress_commands_and_the_admin_api(net, volley, tmp_path) -> None:
    v = volley()
    assert v.cli("suppress", "add", "bob@x.test", "--reason", "asked").returncode == 0
    assert v.cli("suppress", "add", "ann@y.test", "--scope", "news.test").returncode == 0
    assert v.cli("suppress", "add", "typo.test", "--expires", "1d").returncode == 0
    got = v.cli("suppress", "check", "bob@x.test")
    assert got.returncode == 1 and "is suppressed (global, manual): asked" in got.stdout
    assert v.cli("suppress", "check", "ann@y.test").returncode == 0
    assert v.cli("suppress", "check", "ann@y.test", "--sender-domain", "news.test").returncode == 1
    assert v.cli("suppress", "check", "someone@typo.test").returncode == 1
    listed = v.cli_json("suppress", "list")
    assert [e["key"] for e in listed["entries"]] == ["ann@y.test", "bob@x.test", "typo.test"]
    # The API, with the token the CLI found beside the spool.
    token = (v.spool / "admin.token").read_text().strip()
    assert api(v, "GET", "/v1/suppressions")[0] == 401
    status, got = api(
        v, "POST", "/v1/suppressions", {"entries": [{"address": "eve@z.test"}], "by": "t"}, token
    )
    assert (status, got["added"]) == (200, 1)
    status, got = api(v, "GET", "/v1/suppressions/check?address=eve@z.test", token=token)
    assert status == 200 and got["suppressed"] and got["entry"]["source"] == "manual"
    # Export, remove everything, import it back.
    csv_path = tmp_path / "list.csv"
    got = v.cli("suppress", "export", str(csv_path))
    assert got.returncode == 0 and "exported 4 entries" in got.stderr
    for address in ("ann@y.test", "bob@x.test", "typo.test", "eve@z.test"):
        assert v.cli("suppress", "remove", address).returncode == 0
    assert v.cli_json("suppress", "list")["entries"] == []
    got = v.cli("suppress", "import", str(csv_path))
    assert got.returncode == 0 and "imported 4 entries" in got.stdout
    assert len(v.cli_json("suppress", "list")["entries"]) == 4
    wait_for(lambda: v.count("suppressions_imported") == 1, timeout=10)
    added = [r for r in v.events("suppression_added")]
    assert len(added) == 4 and added[-1]["by"] == "t" and added[0]["worker"] is None
    assert v.count("suppression_removed") == 4
    assert v.stop() == 0
    # Stopped: the commands use the file itself.
    got = v.cli("suppress", "remove", "bob@x.test")
    assert got.returncode == 0, got.stderr
    assert v.cli("suppress", "check", "bob@x.test").returncode == 0
    assert v.cli("suppress", "check", "eve@z.test").returncode == 1
