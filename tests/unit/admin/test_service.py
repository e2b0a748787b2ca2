"""engine.admin.service: suspensions (store, broadcast, log, metrics, expiry with a fake
clock), and directives gathered from every live worker, with partial answers when a
worker dies or does not answer."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from engine.admin.requests import Selector
from engine.admin.service import Unavailable, history
from engine.telemetry.eventlog import EventLog
from tests.support.admin_fakes import Env, T
from tests.support.net import async_wait_for


async def test_suspend_and_resume(make: Callable[..., Env]) -> None:
    env = make()
    env.service.start()
    got = env.service.suspend("a.test", 3600.0, "blocked", "ops")
    assert got["suspended"]["until"] == T + 3600
    msg = ["suspensions", [["a.test", T + 3600, "blocked"]]]
    assert [s for s in env.workers.sent if s[1] == "suspensions"] == [(0, *msg), (1, *msg)]
    (rec,) = env.records()
    assert rec["event"] == "suspended" and rec["worker"] is None
    assert (rec["domain"], rec["until"], rec["reason"], rec["by"]) == (
        "a.test",
        T + 3600,
        "blocked",
        "ops",
    )
    text = env.metrics()
    assert "volley_suspended_destinations 1.0" in text
    assert 'volley_operator_actions_total{action="suspend"} 1.0' in text
    assert env.service.suspensions()["suspensions"][0]["domain"] == "a.test"

    assert env.service.resume("a.test", "ops") == {"domain": "a.test", "was_suspended": True}
    assert env.workers.sent[-1] == (1, "suspensions", [])
    assert env.service.resume("a.test", "ops")["was_suspended"] is False
    assert [r["event"] for r in env.records()] == ["suspended", "resumed"]  # one resume logged
    assert "volley_suspended_destinations 0.0" in env.metrics()
    await env.service.close()


async def test_a_suspension_ends_by_itself(make: Callable[..., Env]) -> None:
    env = make()
    env.service.start()
    env.service.suspend("a.test", 60.0, "", "ops")
    env.service.suspend("b.test", 600.0, "", "ops")
    env.now = T + 60
    env.service._expire(env.now)
    assert [s[2] for s in env.workers.sent if s[0] == 0][-1] == [["b.test", T + 600, ""]]
    ended = env.records()[-1]
    assert (ended["event"], ended["domain"], ended["expired"]) == ("resumed", "a.test", True)
    assert [s["domain"] for s in env.service.suspensions()["suspensions"]] == ["b.test"]
    await env.service.close()


async def test_suspensions_outlive_the_service_and_expire_while_it_was_down(
    make: Callable[..., Env],
) -> None:
    env = make()
    env.service.start()
    env.service.suspend("a.test", 60.0, "", "ops")
    env.service.suspend("b.test", 600.0, "r", "ops")
    await env.service.close()
    again = make()
    again.now = T + 100
    again.service.start()
    assert again.service.suspension_message() == [["b.test", T + 600, "r"]]
    assert again.records()[-1]["domain"] == "a.test" and again.records()[-1]["expired"]
    await again.service.close()


async def test_directives_gather_every_workers_reply(make: Callable[..., Env]) -> None:
    def answer(k: int, action: str, args: dict[str, Any]) -> dict[str, Any]:
        if action == "flush":
            return {"flushed": k + 1}
        if action == "list":
            return {
                "total": 3,
                "entries": [{"id": f"{i}{k}", "domain": "d.test"} for i in range(3)],
            }
        return {"matched": 2, "removed": 1, "recipients": 4, "in_flight": 1}

    env = make(answer=answer)
    env.service.start()
    got = await env.service.flush("d.test", "ops")
    assert got == {"domain": "d.test", "flushed": 3}
    flushed = env.records()[-1]
    assert (flushed["event"], flushed["domain"], flushed["entries"]) == ("flushed", "d.test", 3)
    got = await env.service.remove("bounce", Selector(domain="d.test"), "why", "ops")
    assert (got["matched"], got["removed"], got["recipients"], got["in_flight"]) == (4, 2, 8, 2)
    assert env.workers.sent[-1][3:] == (
        "bounce",
        {"selector": {"domain": "d.test"}, "reason": "why", "by": "ops"},
    )
    listing = await env.service.list_entries(None, 4)
    assert [e["id"] for e in listing["entries"]] == ["00", "01", "10", "11"]  # oldest first
    assert listing["total"] == 6 and listing["truncated"] is True
    assert 'volley_operator_actions_total{action="bounce"} 1.0' in env.metrics()
    await env.service.close()


async def test_a_dead_or_silent_worker_makes_a_partial_answer(make: Callable[..., Env]) -> None:
    env = make(answer=lambda k, action, args: {"flushed": 1} if k == 0 else None)
    env.service.start()
    task = asyncio.create_task(env.service.flush(None, "ops"))
    await async_wait_for(lambda: env.service._pending, timeout=5)  # the directive went out
    env.service.worker_gone(1)  # worker 1 died: stop waiting for it
    got = await asyncio.wait_for(task, 5)
    assert got["flushed"] == 1 and got["workers_missing"] == [1]
    replies, missing = await env.service._ask("flush", {}, timeout=0.05)  # 1 never answers
    assert list(replies) == [0] and missing == [1]
    await env.service.close()


async def test_worker_errors_are_passed_on(make: Callable[..., Env]) -> None:
    env = make(answer=lambda k, a, args: {"error": "bad"} if k else {"entries": []})
    env.service.start()
    got = await env.service.show("0" * 29)
    assert got is not None and got["errors"] == {"1": "bad"}
    await env.service.close()


async def test_no_worker_no_answer(make: Callable[..., Env]) -> None:
    env = make(ks=[])
    env.service.start()
    with pytest.raises(Unavailable):
        await env.service.flush(None, "ops")
    await env.service.close()


async def test_show_adds_the_history_and_is_none_for_an_unknown_message(
    make: Callable[..., Env],
) -> None:
    env = make(answer=lambda k, a, args: {"entries": []})
    env.service.start()
    assert await env.service.show("0" * 29) is None
    log = EventLog(env.log_path, 0)
    log.add("received", T, id="1" * 29, rcpt="a@d.test")
    log.add("dsn", T + 1, id="2" * 29, about="1" * 29)
    log.add("received", T, id="3" * 29, rcpt="b@d.test")
    log.close()
    got = await env.service.show("1" * 29)
    assert got is not None and got["entries"] == []
    assert [h["event"] for h in got["history"]] == ["received", "dsn"]
    await env.service.close()


def test_history_reads_only_complete_matching_lines(tmp_path: Path) -> None:
    path = tmp_path / "log"
    lines = [
        {"event": "received", "id": "A"},
        {"event": "delivered", "id": "B", "text": 'mentions "A" in a reply'},
        {"event": "deferred", "id": "A"},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in lines) + '{"event": "torn", "id": "A"')
    assert [r["event"] for r in history(path, "A")] == ["received", "deferred"]
    assert [r["event"] for r in history(path, "A", limit=1)] == ["deferred"]  # the last ones
    assert history(tmp_path / "missing", "A") == []
