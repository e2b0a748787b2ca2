import dataclasses
import os
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from engine.auth.dkim import signer_for, unstuff
from engine.config import DkimDomain, Settings, UnsubscribeSettings
from engine.runtime.intake import (
    QUIET_AFTER,
    RESCAN,
    Noted,
    Pickup,
    interrupted_take,
    shard_of,
    take_batch,
)
from engine.suppress.gate import IntakeGate
from engine.suppress.model import GLOBAL, Entry, Source
from engine.suppress.store import SqliteSuppressionStore, StoreError
from engine.unsubscribe.token import Claim, ensure_secret, load_keyring, verify
from spool import Spool, entry_id


def drop(spool: Spool, name: str, data: bytes) -> None:
    tmp = spool.incoming / f".{name}.tmp"
    tmp.write_bytes(data)
    tmp.rename(spool.incoming / name)


MSG = (
    b"From: a@sender.test\r\nTo: x@one.test, y@two.test\r\nCc: z@one.test\r\n"
    b"Subject: s\r\n\r\nhi\r\n.dot\r\n"
)


def settings(tmp_path: Path, workers: int = 1) -> Settings:
    return Settings(spool_path=tmp_path, workers=workers, helo_name="t.test")


def test_splits_per_domain_queues_durably_then_removes_the_drop(tmp_path: Path) -> None:
    sp = Spool(tmp_path)
    sp.ensure(1)
    drop(sp, "m1.eml", MSG)
    batch = take_batch(sp, sp.shard(0), 0, settings(tmp_path), now=1000.0)
    assert batch.rejected == [] and not batch.full
    got = {t.ref.domain: t.recipients for t in batch.taken}
    assert got == {"one.test": ("x@one.test", "z@one.test"), "two.test": ("y@two.test",)}
    assert sp.incoming_names() == []
    meta, body = sp.shard(0).load(batch.taken[0].ref)
    assert meta["sender"] == "a@sender.test" and meta["attempts"] == 0 and meta["created"] == 1000.0
    assert body.endswith(b"\r\n..dot\r\n")  # stored in wire form: dot-stuffed once


def test_retaking_the_same_drop_after_a_crash_queues_nothing_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sp = Spool(tmp_path)
    sp.ensure(1)
    drop(sp, "m1.eml", MSG)

    class Crash(Exception):
        pass

    def crash(self: Spool, names: object) -> None:
        raise Crash  # the worker dies after "entries durable", before "drops removed"

    with monkeypatch.context() as m:
        m.setattr(Spool, "consume_drops", crash)
        with pytest.raises(Crash):
            take_batch(sp, sp.shard(0), 0, settings(tmp_path), now=1.0)
    queued = {r.name for r in sp.shard(0).scan()}
    assert len(queued) == 2 and sp.incoming_names() == ["m1.eml"]
    restarted = Spool(tmp_path)
    restarted.shard(0).recover()
    noted = interrupted_take(restarted, 0)
    assert list(noted) == ["m1.eml"]
    again = take_batch(restarted, restarted.shard(0), 0, settings(tmp_path), now=2.0, noted=noted)
    assert {t.ref.name for t in again.taken} == queued
    assert restarted.shard(0).count() == 2 and restarted.incoming_names() == []
    assert interrupted_take(restarted, 0) == {}


def test_a_different_drop_with_the_same_name_and_metadata_is_queued(tmp_path: Path) -> None:
    """Finding 6 of issue #14: `cp -p` of another news.eml with the same size and mtime
    (even on a reused inode) is a new message, never "already queued"."""
    sp = Spool(tmp_path)
    sp.ensure(1)
    other = MSG.replace(b"Subject: s", b"Subject: t")
    assert len(other) == len(MSG)
    first: set[str] = set()
    for data in (MSG, other):
        drop(sp, "news.eml", data)
        os.utime(tmp_path / "incoming" / "news.eml", ns=(1_000_000_000, 1_000_000_000))
        batch = take_batch(sp, sp.shard(0), 0, settings(tmp_path), now=1.0)
        assert batch.rejected == [] and len(batch.taken) == 2
        names = {t.ref.name for t in batch.taken}
        assert not names & first
        first |= names
    assert sp.shard(0).count() == 4


def test_a_noted_name_now_holding_another_drop_gets_new_ids(tmp_path: Path) -> None:
    sp = Spool(tmp_path)
    sp.ensure(1)
    drop(sp, "m1.eml", MSG)
    salt = b"s" * 16
    mtime_ns = os.stat(tmp_path / "incoming" / "m1.eml").st_mtime_ns
    stale = {"m1.eml": Noted(b"some other file", salt)}
    batch = take_batch(sp, sp.shard(0), 0, settings(tmp_path), now=1.0, noted=stale)
    assert len(batch.taken) == 2
    for t in batch.taken:
        meta, _ = sp.shard(0).load(t.ref)
        assert meta["msg"] != entry_id(mtime_ns, salt)
    assert interrupted_take(sp, 0) == {}


def test_date_and_message_id_are_added_when_missing(tmp_path: Path) -> None:
    """Issue #9: as Postfix's cleanup does; providers refuse mail without them."""
    sp = Spool(tmp_path)
    sp.ensure(1)
    drop(sp, "m1.eml", MSG)  # neither field
    (a, b) = take_batch(sp, sp.shard(0), 0, settings(tmp_path), now=1_800_000_000.0).taken
    meta, body = sp.shard(0).load(a.ref)
    head = body.split(b"\r\n\r\n")[0]
    assert head.startswith(b"From: a@sender.test\r\n")
    assert head.endswith(f"\r\nMessage-ID: {a.message_id}".encode())
    assert b"\r\nDate: " in head and b" 2027 " in head
    assert a.message_id is not None and a.message_id.endswith("@t.test>")
    assert meta["msgid"] == a.message_id == b.message_id and meta["msg"]
    assert sp.shard(0).load(b.ref)[0]["msg"] == meta["msg"]  # one message, two entries
    drop(sp, "m2.eml", b"Date: Thu, 26 Nov 2026 12:00:00 +0000\r\nMessage-ID: <x@y>\r\n" + MSG)
    (c, _) = take_batch(sp, sp.shard(0), 0, settings(tmp_path), now=1.0).taken
    _, body = sp.shard(0).load(c.ref)
    assert body.count(b"Date:") == 1 and body.count(b"Message-ID:") == 1
    assert c.message_id == "<x@y>"


def test_rejects_with_reason_and_leaves_other_shards_drops(tmp_path: Path) -> None:
    sp = Spool(tmp_path)
    sp.ensure(2)
    names = [f"n{i}.eml" for i in range(20)]
    for n in names:
        drop(sp, n, b"no header section at all")
    batch = take_batch(sp, sp.shard(0), 0, settings(tmp_path, workers=2), now=1.0)
    mine = [n for n in names if shard_of(n, 2) == 0]
    assert 0 < len(mine) < 20
    assert sorted(n for n, _ in batch.rejected) == sorted(mine)
    assert all((tmp_path / "rejected" / f"{n}.reason").read_text() for n in mine)
    assert sorted(sp.incoming_names()) == sorted(set(names) - set(mine))


def test_full_spool_leaves_drops_in_incoming(tmp_path: Path, monkeypatch) -> None:
    from spool import ShardQueue, SpoolFull

    sp = Spool(tmp_path)
    sp.ensure(1)
    drop(sp, "m1.eml", MSG)

    def full(self: ShardQueue, items: object) -> None:
        raise SpoolFull("No space left on device")

    monkeypatch.setattr(ShardQueue, "add", full)
    batch = take_batch(sp, sp.shard(0), 0, settings(tmp_path), now=1.0)
    assert batch.full and batch.taken == []
    assert sp.incoming_names() == ["m1.eml"]


def test_batch_limit_reports_more(tmp_path: Path) -> None:
    sp = Spool(tmp_path)
    sp.ensure(1)
    for i in range(5):
        drop(sp, f"m{i}.eml", MSG)
    s = Settings(spool_path=tmp_path, workers=1, intake_batch=3, helo_name="t.test")
    b = take_batch(sp, sp.shard(0), 0, s, now=1.0)
    assert b.more and len({t.drop for t in b.taken}) == 3
    b = take_batch(sp, sp.shard(0), 0, s, now=1.0)
    assert not b.more and len({t.drop for t in b.taken}) == 2


def test_an_unchanged_empty_incoming_is_not_listed_again(tmp_path: Path) -> None:
    sp = Spool(tmp_path)
    sp.ensure(1)
    pickup = Pickup(sp, 0, settings(tmp_path))
    now = 2_000_000_000.0
    os.utime(sp.incoming, (now - 10, now - 10))  # last changed 10 s ago
    assert not pickup.idle(now)  # never listed: list it
    assert pickup.next_batch(now) == ([], False)
    assert pickup.idle(now + 0.05)  # unchanged since: no listing, only a stat
    assert not pickup.idle(now + RESCAN)  # listed at least every RESCAN anyway
    drop(sp, "m1.eml", MSG)
    os.utime(sp.incoming, (now - 9, now - 9))  # what the drop did, on the test's clock
    assert not pickup.idle(now + 0.1)
    assert pickup.next_batch(now + 0.1) == (["m1.eml"], False)
    assert pickup.idle(now + 0.2)  # handed out; nothing new since
    (sp.incoming / "m1.eml").unlink()  # taking it moves the mtime: list once more
    os.utime(sp.incoming, (now - 8, now - 8))
    assert not pickup.idle(now + 0.3)


def test_a_recent_mtime_is_not_trusted(tmp_path: Path) -> None:
    # Changed within QUIET_AFTER of the listing: a drop landing in the same tick of a
    # coarse filesystem clock would leave the mtime as it was, so list again.
    sp = Spool(tmp_path)
    sp.ensure(1)
    pickup = Pickup(sp, 0, settings(tmp_path))
    now = 2_000_000_000.0
    os.utime(sp.incoming, (now - 0.5, now - 0.5))
    pickup.next_batch(now)
    assert not pickup.idle(now + 0.05)
    assert pickup.idle(now - 0.5 + QUIET_AFTER + 0.01) is False  # listed over RESCAN ago
    pickup.next_batch(now + QUIET_AFTER)
    assert pickup.idle(now + QUIET_AFTER + 0.05)


# -- the suppression list and List-Unsubscribe (engine.suppress.gate) --------------------
def _gate(tmp_path: Path, entries: list[Entry], unsubscribe: bool = False) -> IntakeGate:
    store = SqliteSuppressionStore(tmp_path / "suppression.db")
    store.add(entries, replace=True)
    store.close()
    s = settings(tmp_path)
    if unsubscribe:
        ensure_secret(tmp_path / "unsubscribe.key")
        u = UnsubscribeSettings(url_base="https://u.example.com", mailto="unsub@b.test")
        s = dataclasses.replace(s, unsubscribe=u)
    return IntakeGate.for_settings(s)


def test_suppressed_recipients_are_not_queued_and_say_why(tmp_path: Path) -> None:
    sp = Spool(tmp_path)
    sp.ensure(1)
    gone = Entry("z@one.test", GLOBAL, "InvalidRecipient: 550 5.1.1", Source.BOUNCE, 1.0)
    unsub = Entry("y@two.test", "sender.test", "unsubscribed", Source.UNSUBSCRIBE, 1.0)
    gate = _gate(tmp_path, [gone, unsub])
    drop(sp, "m1.eml", MSG)
    drop(sp, "m2.eml", b"From: a@sender.test\r\nTo: y@two.test\r\nSubject: s\r\n\r\nhi\r\n")
    batch = take_batch(sp, sp.shard(0), 0, settings(tmp_path), now=1000.0, gate=gate)
    assert {t.ref.domain: t.recipients for t in batch.taken} == {"one.test": ("x@one.test",)}
    assert [(x.hit.recipient, x.hit.entry, x.drop) for x in batch.suppressed] == [
        ("y@two.test", unsub, "m1.eml"),
        ("z@one.test", gone, "m1.eml"),
        ("y@two.test", unsub, "m2.eml"),
    ]
    assert batch.suppressed[0].sender_domain == "sender.test"
    # Every recipient of m2 suppressed: consumed, not rejected, nothing queued for it.
    assert batch.rejected == [] and sp.incoming_names() == [] and sp.shard(0).count() == 1
    gate.close()


def test_an_unreadable_list_leaves_the_drops_waiting(tmp_path: Path) -> None:
    sp = Spool(tmp_path)
    sp.ensure(1)
    gate = _gate(tmp_path, [])
    (tmp_path / "suppression.db").unlink()
    (tmp_path / "suppression.db").write_bytes(b"not a database at all" * 100)
    drop(sp, "m1.eml", MSG)
    with pytest.raises(StoreError):
        take_batch(sp, sp.shard(0), 0, settings(tmp_path), now=1000.0, gate=gate)
    assert sp.incoming_names() == ["m1.eml"] and sp.shard(0).count() == 0
    gate.close()


def test_list_unsubscribe_per_single_recipient_entry_and_signed_after_it(tmp_path: Path) -> None:
    sp = Spool(tmp_path)
    sp.ensure(1)
    gate = _gate(tmp_path, [], unsubscribe=True)
    key = ed25519.Ed25519PrivateKey.generate()
    pem = tmp_path / "ed.pem"
    pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    s = dataclasses.replace(settings(tmp_path), dkim=(DkimDomain("sender.test", "s1", pem),))
    drop(sp, "m1.eml", MSG.replace(b"Subject: s", b"List-Id: <weekly.sender.test>\r\nSubject: s"))
    batch = take_batch(sp, sp.shard(0), 0, s, now=1000.0, gate=gate)
    bodies = {t.ref.domain: sp.shard(0).load(t.ref)[1] for t in batch.taken}
    # two.test's entry has one recipient: its own link; one.test's has two: none.
    assert b"List-Unsubscribe" not in bodies["one.test"]
    assert sorted(batch.headers) == [
        ("added", batch.taken[0].message_id, "two.test", 1),
        ("several_recipients", batch.taken[0].message_id, "one.test", 2),
    ]
    two = bodies["two.test"]
    assert b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n" in two
    token = two.split(b"https://u.example.com/u/")[1].split(b">")[0].decode()
    ring = load_keyring(tmp_path / "unsubscribe.key")
    assert verify(ring, token) == Claim("y@two.test", "sender.test", "weekly.sender.test")
    # Each copy signed, and the signature covers both fields (RFC 8058 §4).
    signer = signer_for(s.dkim)
    assert signer is not None
    for body in bodies.values():
        assert body.startswith(b"DKIM-Signature:")
        message = unstuff(body)
        public = signer.keys[0].public.encode()
        record = b"v=DKIM1; k=ed25519; p=" + public
        assert dkim.DKIM(message).verify(dnsfunc=lambda name, timeout=5, r=record: r)
    h = two.split(b"h=")[1].split(b";")[0].replace(b"\r\n", b"").replace(b" ", b"")
    assert b"list-unsubscribe:list-unsubscribe-post" in h
    gate.close()
