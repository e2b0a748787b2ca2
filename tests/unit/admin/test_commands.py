"""engine.admin.commands through `volley ...` (engine.cli.main): the request each command
sends, what it prints, its exit status; with a fake client in place of the HTTP one."""

from __future__ import annotations

import json
from typing import Any

import pytest

from engine.admin.client import AdminError
from engine.cli import main

ID = "1" * 29
NOW_ISH = 2_000_000_000.0


class FakeClient:
    def __init__(self, answers: dict[str, dict[str, Any]]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, str, Any, Any]] = []

    def call(self, method: str, path: str, body: Any = None, query: Any = None) -> dict[str, Any]:
        self.calls.append((method, path, body, query))
        got = self.answers.get(path)
        if got is None:
            raise AdminError("no message (HTTP 404)")
        return got


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch) -> FakeClient:
    fake = FakeClient({})
    monkeypatch.setattr(
        "engine.admin.commands.AdminClient.from_settings", classmethod(lambda cls, s: fake)
    )
    monkeypatch.setattr("engine.admin.commands.getpass.getuser", lambda: "ann")
    return fake


def run(argv: list[str], capsys: pytest.CaptureFixture[str], tmp_path: Any) -> tuple[int, str, str]:
    code = main([*argv, "--spool", str(tmp_path)])
    out, err = capsys.readouterr()
    return code, out, err


def test_suspend_resume(client: FakeClient, capsys: Any, tmp_path: Any) -> None:
    client.answers["/v1/suspend"] = {
        "suspended": {"domain": "d.test", "until": NOW_ISH, "reason": "blocked"}
    }
    code, out, _ = run(["suspend", "d.test", "--reason", "blocked"], capsys, tmp_path)
    assert (
        code == 0
        and out.startswith("suspended d.test until ")
        and out.rstrip().endswith(": blocked")
    )
    body = {"domain": "d.test", "duration": "1h", "reason": "blocked", "by": "ann"}
    assert client.calls[-1] == ("POST", "/v1/suspend", body, None)
    client.answers["/v1/suspensions"] = {"suspensions": []}
    assert run(["suspend", "--list"], capsys, tmp_path)[1] == "no destination is suspended\n"
    assert run(["suspend"], capsys, tmp_path)[0] == 0  # no DOMAIN: the list
    assert run(["suspend", "d.test", "--list"], capsys, tmp_path)[0] == 2
    client.answers["/v1/resume"] = {"domain": "d.test", "was_suspended": False}
    assert run(["resume", "d.test"], capsys, tmp_path)[1] == "d.test was not suspended\n"


def test_flush_bounce_delete(client: FakeClient, capsys: Any, tmp_path: Any) -> None:
    client.answers["/v1/flush"] = {"domain": None, "flushed": 7}
    code, out, _ = run(["flush"], capsys, tmp_path)
    assert (code, out) == (0, "flushed 7 deferred entries (all destinations): retried now\n")
    assert client.calls[-1][2] == {"domain": None, "by": "ann"}
    removed = {"removed": 2, "recipients": 3, "in_flight": 1, "matched": 3}
    client.answers["/v1/bounce"] = {"action": "bounce", **removed}
    code, out, _ = run(["bounce", "--sender", "<>", "--reason", "x"], capsys, tmp_path)
    assert code == 0 and "bounced 2 queued entries (3 recipients, a DSN to each sender)" in out
    assert "1 entries are being sent now: bounced when" in out
    assert client.calls[-1][2] == {"sender": "<>", "reason": "x", "by": "ann"}
    client.answers["/v1/delete"] = {"action": "delete", **removed, "workers_missing": [1]}
    code, out, err = run(["delete", "--all"], capsys, tmp_path)
    assert code == 1 and "no DSN" in out and "no answer from worker(s) 1" in err  # partial
    assert client.calls[-1][2] == {"all": True, "by": "ann"}
    with pytest.raises(SystemExit) as exit_:
        main(["delete", "--spool", str(tmp_path)])  # a selector is required
    assert exit_.value.code == 2


def test_list_and_show(client: FakeClient, capsys: Any, tmp_path: Any) -> None:
    entry = {
        "id": ID,
        "domain": "d.test",
        "state": "deferred",
        "next_attempt": NOW_ISH,
        "sender": "news@s.test",
        "recipients": ["a@d.test", "b@d.test"],
        "attempts": 2,
        "created": NOW_ISH - 60,
        "last": {
            "code": 451,
            "enhanced": "4.3.0",
            "text": "try again",
            "category": "TransientFailure",
        },
        "msgid": "<m@s.test>",
        "size": 1234,
        "headers": "From: news@s.test\r\nSubject: Hi\r\n",
    }
    client.answers["/v1/queue"] = {"total": 5, "entries": [entry], "truncated": True}
    code, out, _ = run(["queue", "--list", "--domain", "d.test", "--limit", "1"], capsys, tmp_path)
    assert code == 0
    assert client.calls[-1] == ("GET", "/v1/queue", None, {"domain": "d.test", "limit": 1})
    assert f"{ID}  d.test  deferred  attempts 2  next " in out
    assert "    to   a@d.test, b@d.test\n" in out
    assert "last 451 4.3.0 try again [TransientFailure]" in out
    assert "5 queued entries (showing the oldest 1; --limit for more)" in out
    code, out, _ = run(["queue", "--list", "--json"], capsys, tmp_path)
    assert json.loads(out)["total"] == 5
    assert run(["queue", "--domain", "d.test"], capsys, tmp_path)[0] == 2  # needs --list

    history = [
        {"ts": NOW_ISH - 60, "event": "received", "rcpt": "a@d.test", "domain": "d.test"},
        {"ts": NOW_ISH - 30, "event": "deferred", "rcpt": "a@d.test", "domain": "d.test",
         "code": 451, "enhanced": "4.3.0", "text": "try again", "category": "TransientFailure"},
    ]  # fmt: skip
    client.answers[f"/v1/messages/{ID}"] = {"id": ID, "entries": [entry], "history": history}
    code, out, _ = run(["show", ID], capsys, tmp_path)
    assert code == 0
    for part in ("sender   news@s.test", "d.test: deferred", "Subject: Hi", "received   a@d.test"):
        assert part in out
    assert "last reply    451 4.3.0 try again [TransientFailure]" in out
    assert "deferred   a@d.test  d.test  451 4.3.0 try again [TransientFailure]" in out
    code, _, err = run(["show", "0" * 29], capsys, tmp_path)
    assert code == 1 and err == "volley: show: no message (HTTP 404)\n"
