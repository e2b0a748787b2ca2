"""engine.admin.api: every route, and every failure as a status with one error line."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from engine.admin.api import Api
from tests.support.admin_fakes import Env, T

ID = "1" * 29


def answer(k: int, action: str, args: dict[str, Any]) -> dict[str, Any]:
    if action == "show":
        return {"entries": [{"id": args["id"], "domain": "d.test", "state": "queued"}]}
    if action == "list":
        return {"total": 0, "entries": []}
    if action == "flush":
        return {"flushed": 0}
    return {"matched": 0, "removed": 0, "recipients": 0, "in_flight": 0}


async def test_routes(make: Callable[..., Env]) -> None:
    env = make(answer=answer)
    env.service.start()
    api = Api(env.service)
    status, got = await api.handle(
        "POST", "/v1/suspend", {}, {"domain": "D.test", "duration": "2h"}
    )
    assert status == 200 and got["suspended"]["until"] == T + 7200
    assert got["suspended"]["by"] == "api"  # no `by`: the API says so
    status, got = await api.handle("GET", "/v1/suspensions", {}, {})
    assert status == 200 and [s["domain"] for s in got["suspensions"]] == ["d.test"]
    status, got = await api.handle("POST", "/v1/resume", {}, {"domain": "d.test", "by": "ann"})
    assert status == 200 and got["was_suspended"]
    assert env.records()[-1]["by"] == "ann"
    assert (await api.handle("POST", "/v1/flush", {}, {}))[1]["domain"] is None
    assert (await api.handle("POST", "/v1/flush", {}, {"domain": "D.test"}))[1][
        "domain"
    ] == "d.test"
    status, got = await api.handle("POST", "/v1/bounce", {}, {"id": ID, "reason": "r"})
    assert status == 200 and got["selector"] == {"id": ID} and got["action"] == "bounce"
    status, got = await api.handle("POST", "/v1/delete", {}, {"all": True})
    assert status == 200 and got["selector"] == {"all": True}
    status, got = await api.handle("GET", "/v1/queue", {"domain": "d.test", "limit": "5"}, {})
    assert status == 200 and got["total"] == 0
    status, got = await api.handle("GET", f"/v1/messages/{ID}", {}, {})
    assert status == 200 and got["entries"][0]["id"] == ID
    await env.service.close()


async def test_errors(make: Callable[..., Env]) -> None:
    env = make(ks=[], answer=answer)
    env.service.start()
    api = Api(env.service)
    cases = [
        ("GET", "/v1/nope", {}, 404, "no such endpoint"),
        ("GET", "/", {}, 404, "no such endpoint"),
        ("DELETE", "/v1/suspend", {}, 405, "use POST"),
        ("POST", f"/v1/messages/{ID}", {}, 405, "use GET"),
        ("POST", "/v1/suspend", {}, 400, "domain"),
        ("POST", "/v1/suspend", {"domain": "d.test", "duration": "forever"}, 400, "duration"),
        ("POST", "/v1/bounce", {"domain": "d.test", "sender": "a@b.test"}, 400, "one selector"),
        ("POST", "/v1/delete", {}, 400, "selector is required"),
        ("GET", "/v1/messages/xyz", {}, 400, "29 hex digits"),
        ("POST", "/v1/flush", {}, 503, "no worker is running"),
    ]
    for method, path, body, status, text in cases:
        got_status, got = await api.handle(method, path, {}, body)
        assert (got_status, text in got["error"]) == (status, True), (method, path, got)
    await env.service.close()


async def test_an_unknown_message_is_404(make: Callable[..., Env]) -> None:
    env = make(answer=lambda k, a, args: {"entries": []})
    env.service.start()
    status, got = await Api(env.service).handle("GET", f"/v1/messages/{ID}", {}, {})
    assert status == 404 and ID in got["error"]
    await env.service.close()
