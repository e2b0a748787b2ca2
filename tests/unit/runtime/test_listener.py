"""GroupCommit: messages that finish together share one segment; 250 only after it is
durable; the worker's queue and log see them like drops; spool trouble is a 4xx; bounce-
domain copies go to the local store (a stand-in for engine.feedback.inbox.store here,
which has its own tests); DKIM signs what is queued."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from engine.auth.keygen import keygen
from engine.config import Settings, SmtpdSettings, from_dict
from engine.drop import parse_drop
from engine.runtime.intake import new_meta
from engine.runtime.listener import ClientGate, startup_problem
from engine.runtime.smtp_commit import GroupCommit
from engine.sched.queue import WorkQueue
from engine.smtpd.auth import set_password
from engine.smtpd.events import Envelope
from engine.telemetry.eventlog import EventLog, read_log
from engine.telemetry.metrics import CheckedTally
from spool import EntryRef, Spool, SpoolFull
from tests.support.tls_certs import write_self_signed

DATA = b"From: a@sender.test\r\nSubject: hi\r\n\r\nbody\r\n..dot\r\n"


def envelope(*rcpts: str, local: Sequence[str] = (), user: str | None = None) -> Envelope:
    return Envelope(
        sender="a@sender.test",
        recipients=tuple(rcpts),
        local_recipients=tuple(local),
        smtputf8=False,
        helo="client.test",
        esmtp=True,
        tls=False,
        auth_user=user,
        client="127.0.0.1",
    )


class Kept:
    """The local store's stand-in: what engine.feedback.inbox.store was asked to keep."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[dict[str, Any]] = []
        self.fail = fail

    def __call__(
        self, spool_root: Path, raw: bytes, *, sender: str, recipients: Sequence[str], client: str
    ) -> None:
        if self.fail:
            raise OSError(28, "No space left on device")
        self.calls.append(
            {"root": spool_root, "raw": raw, "sender": sender, "rcpts": list(recipients)}
        )


def queued(sp: Spool) -> list[EntryRef]:
    """What a restarted worker would find (a fresh look at the disk)."""
    shard = Spool(sp.root).shard(0)
    shard.scan()  # the first scan after start-up reports what recover read; look again
    return shard.scan()


def setup(
    tmp_path: Path, kept: Kept | None = None, dkim: dict[str, Any] | None = None
) -> tuple[GroupCommit, Spool, WorkQueue, Path]:
    settings = from_dict(
        {
            "spool": {"path": str(tmp_path / "spool")},
            "workers": 1,
            "smtp": {"helo_name": "mx.volley.test"},
            "dkim": dkim or {},
        }
    )
    sp = Spool(settings.spool_path)
    sp.ensure(1)
    shard = sp.shard(0)
    shard.recover()
    queue = WorkQueue()
    log_path = tmp_path / "log.jsonl"
    log = EventLog(log_path, 0)
    kicks: list[int] = []
    commit = GroupCommit(
        settings,
        shard,
        queue,
        log,
        CheckedTally(),
        lambda: kicks.append(1),
        store_local=kept or Kept(),
    )
    return commit, sp, queue, log_path


async def test_messages_finishing_together_share_one_segment_and_are_queued(tmp_path: Path) -> None:
    commit, sp, queue, log_path = setup(tmp_path)
    futs = [
        commit.submit(envelope("b@one.test", "c@two.test", user="alice"), DATA),
        commit.submit(envelope("d@one.test"), DATA),
        commit.submit(envelope("e@three.test"), DATA),
    ]
    results = await asyncio.gather(*futs)
    assert all(ok for _, ok in results)
    assert all(reply.startswith(b"250 2.0.0 Ok: queued as ") for reply, _ in results)
    segments = list((sp.root / "queue" / "0").glob("*.seg"))
    assert len(segments) == 1  # one segment, one fsync, for the three messages
    refs = queued(sp)
    assert sorted(r.domain for r in refs) == ["one.test", "one.test", "three.test", "two.test"]
    assert queue.counts()[0] == 4
    meta, body = sp.shard(0).load(next(r for r in refs if r.domain == "two.test"))
    assert body.startswith(b"Received: from client.test ([127.0.0.1])")
    assert body.endswith(b"\r\n\r\nbody\r\n..dot\r\n")  # wire form as received
    assert b"\r\nDate: " in body and meta["msgid"].endswith("@mx.volley.test>")
    assert (meta["via"], meta["client"], meta["auth"], meta["drop"]) == (
        "smtp",
        "127.0.0.1",
        "alice",
        None,
    )
    assert meta["rcpts"] == ["c@two.test"]
    commit.log.flush()
    received = [r for r in read_log(log_path) if r["event"] == "received"]
    assert len(received) == 4 and {r["via"] for r in received} == {"smtp"}
    assert received[0]["auth"] == "alice" and received[0]["client"] == "127.0.0.1"


async def test_the_meta_has_the_keys_intake_writes_for_drops(tmp_path: Path) -> None:
    commit, sp, _, _ = setup(tmp_path)
    await commit.submit(envelope("b@one.test"), DATA)
    (ref,) = queued(sp)
    meta, _ = sp.shard(0).load(ref)
    env = parse_drop(b"From: a@s.test\r\nTo: b@one.test\r\n\r\nx\r\n", max_recipients=10)
    assert not isinstance(env, type(None))
    drop_keys = set(new_meta(env, ["b@one.test"], "one.test", 1.0, "x.eml"))  # type: ignore[arg-type]
    assert set(meta) == drop_keys | {"via", "client", "auth"}


async def test_messages_are_dkim_signed_in_the_commit_thread(tmp_path: Path) -> None:
    key = keygen("sender.test", "s1", "ed25519", 0, tmp_path)
    commit, sp, _, _ = setup(tmp_path, dkim={"sender.test": {"selector": "s1", "key": str(key)}})
    _, ok = await commit.submit(envelope("b@one.test"), DATA)
    assert ok
    (ref,) = queued(sp)
    _, body = sp.shard(0).load(ref)
    assert body.startswith(b"DKIM-Signature: v=1; a=ed25519-sha256;")
    assert b"\r\nReceived: from client.test" in body and body.endswith(b"..dot\r\n")


async def test_a_full_spool_answers_452_and_queues_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    commit, sp, queue, _ = setup(tmp_path)

    def full(staged: object) -> None:
        raise SpoolFull("queue/0: No space left on device")

    monkeypatch.setattr(commit.shard, "commit", full)
    reply, ok = await commit.submit(envelope("b@one.test"), DATA)
    assert (reply, ok) == (b"452 4.3.1 Insufficient system storage\r\n", False)
    assert queue.counts() == (0, 0, 0)
    assert list((sp.root / "tmp" / "0").iterdir()) == []  # the staged file went too
    monkeypatch.undo()
    reply, ok = await commit.submit(envelope("b@one.test"), DATA)  # space again: it works
    assert ok


async def test_bounce_domain_recipients_go_to_the_local_store_unstuffed(tmp_path: Path) -> None:
    kept = Kept()
    commit, sp, queue, _ = setup(tmp_path, kept)
    _, ok = await commit.submit(envelope("b@one.test", local=["r@bounces.test"]), DATA)
    assert ok
    (call,) = kept.calls
    assert call["rcpts"] == ["r@bounces.test"] and call["root"] == sp.root
    assert call["raw"].endswith(b"body\r\n.dot\r\n")  # the message itself, not wire form
    assert [r.domain for r in queued(sp)] == ["one.test"]
    _reply, ok = await commit.submit(envelope(local=["r@bounces.test"]), DATA)
    assert ok and len(kept.calls) == 2 and queue.counts()[0] == 1


async def test_a_local_copy_that_cannot_be_kept_is_a_451_for_its_message_only(
    tmp_path: Path,
) -> None:
    commit, sp, _queue, _ = setup(tmp_path, Kept(fail=True))
    bad = commit.submit(envelope("b@one.test", local=["r@bounces.test"]), DATA)
    good = commit.submit(envelope("c@one.test"), DATA)
    (r1, ok1), (_r2, ok2) = await asyncio.gather(bad, good)
    assert (r1, ok1) == (b"451 4.3.0 Error: queue file write error\r\n", False)
    assert ok2 and [r.name.endswith("@one.test") for r in queued(sp)] == [True]


def test_startup_problems_name_the_key(tmp_path: Path) -> None:
    def settings(**kw: Any) -> Settings:
        return Settings(smtpd=SmtpdSettings(**kw))

    assert startup_problem(settings()) is None
    missing = settings(users_file=tmp_path / "users")
    assert "smtpd.users_file" in (startup_problem(missing) or "")
    assert startup_problem(settings(listen=(), users_file=tmp_path / "users")) is None  # off
    set_password(tmp_path / "users", "alice", b"pw")
    assert startup_problem(missing) is None
    cert, key = write_self_signed("mx.volley.test", tmp_path)
    assert startup_problem(settings(tls_cert=cert, tls_key=key)) is None
    assert "smtpd.tls_cert" in (startup_problem(settings(tls_cert=key, tls_key=cert)) or "")


async def test_the_client_gate_asks_the_supervisor_and_waits() -> None:
    sent: list[tuple[Any, ...]] = []

    class Channel:
        def send(self, *msg: Any) -> None:
            sent.append(msg)

    gate = ClientGate(Channel())  # type: ignore[arg-type]
    task = asyncio.ensure_future(gate.admit("192.0.2.1", 5))
    await asyncio.sleep(0)
    assert sent == [("smtpd_open", 1, "192.0.2.1", 5)]
    gate.answered(1, False)
    assert await task is False
    gate.answered(99, True)  # nobody waits: ignored
    gate.leave("192.0.2.1")
    assert sent[-1] == ("smtpd_close", "192.0.2.1")
