"""engine.suppress.api: the /v1/suppressions routes through engine.admin.api."""

from __future__ import annotations

from pathlib import Path

from engine.admin.api import Api
from engine.config import Settings
from engine.suppress.api import SuppressApi
from engine.suppress.service import SuppressionService
from tests.support.admin_fakes import Env, Workers

T = 1_800_000_000.0


async def test_routes(tmp_path: Path) -> None:
    env = Env(tmp_path, Workers([0]))
    env.service.start()
    s = await SuppressionService.open(
        Settings(spool_path=tmp_path, log_path=tmp_path / "l.jsonl"), lambda *a, **k: None
    )
    api = Api(env.service, SuppressApi(s, clock=lambda: T).routes())
    body = {"entries": [{"address": "Bob@X.test", "reason": "asked"}, {"address": "@typo.test"}]}
    assert await api.handle("POST", "/v1/suppressions", {}, body) == (
        200,
        {"added": 2, "entries": 2},
    )
    status, got = await api.handle("GET", "/v1/suppressions", {"limit": "1"}, {})
    assert status == 200 and got["entries"][0]["key"] == "bob@x.test"
    assert got["next"] == {"key": "bob@x.test", "scope": "global"}
    status, got = await api.handle(
        "GET", "/v1/suppressions", {"after": "bob@x.test", "after_scope": "global"}, {}
    )
    assert [e["key"] for e in got["entries"]] == ["typo.test"] and got["next"] is None
    status, got = await api.handle(
        "GET", "/v1/suppressions/check", {"address": "ann@typo.test"}, {}
    )
    assert got["suppressed"] and got["entry"]["key"] == "typo.test"
    status, got = await api.handle("DELETE", "/v1/suppressions", {}, {"address": "bob@x.test"})
    assert status == 200 and [e["scope"] for e in got["removed"]] == ["global"]
    status, got = await api.handle("GET", "/v1/suppressions/check", {"address": "bob@x.test"}, {})
    assert not got["suppressed"] and got["entries"] == []
    for method, path, query, body, want in [
        ("POST", "/v1/suppressions", {}, {"entries": []}, 400),
        ("POST", "/v1/suppressions", {}, {"entries": [{"address": "not an address"}]}, 400),
        (
            "POST",
            "/v1/suppressions",
            {},
            {"entries": [{"address": "a@b.test", "source": "x"}]},
            400,
        ),
        (
            "POST",
            "/v1/suppressions",
            {},
            {"entries": [{"address": "a@b.test", "expires": "x"}]},
            400,
        ),
        ("DELETE", "/v1/suppressions", {}, {}, 400),
        ("GET", "/v1/suppressions/check", {"address": ""}, {}, 400),
        ("PUT", "/v1/suppressions", {}, {}, 405),
    ]:
        assert (await api.handle(method, path, query, body))[0] == want, (method, body, query)
    await s.close()
    await env.service.close()
