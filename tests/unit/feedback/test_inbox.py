"""engine.feedback.inbox: the durable feedback/ directory the listener writes into."""

from __future__ import annotations

import errno
import os
import re
import stat
from pathlib import Path
from typing import Any

import pytest

from engine.feedback import inbox
from spool import atomic

RAW = b"From: MAILER-DAEMON@x.example\r\n\r\n\x00\xff binary \n kept\r\n"


def _store(root: Path, raw: bytes = RAW, **kw: Any) -> str:
    args: dict[str, Any] = {
        "sender": "",
        "recipients": ["b@bounces.example.com"],
        "client": "192.0.2.1",
    }
    args.update(kw)
    before = set(inbox.pending(root))
    inbox.store(root, raw, **args)
    [name] = set(inbox.pending(root)) - before
    return name


def test_store_then_load_round_trips_the_envelope_and_bytes(tmp_path: Path) -> None:
    name = _store(tmp_path, recipients=["a@bounces.example.com", "b@bounces.example.com"])
    assert re.fullmatch(r"[0-9a-f]{16}-[0-9a-f]{16}\.msg", name)
    got = inbox.load(tmp_path, name)
    assert isinstance(got, inbox.Stored)
    assert (got.name, got.raw, got.sender, got.client) == (name, RAW, "", "192.0.2.1")
    assert got.recipients == ("a@bounces.example.com", "b@bounces.example.com")
    path = tmp_path / "feedback" / name
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # private mail
    assert path.read_bytes().split(b"\n", 1)[0].startswith(inbox.MAGIC)
    assert [p.name for p in (tmp_path / "feedback").iterdir()] == [name]  # no tmp file left


def test_an_envelope_with_newlines_stays_on_its_line(tmp_path: Path) -> None:
    name = _store(tmp_path, sender="a\nb@x.example", client="c\r\nd")
    got = inbox.load(tmp_path, name)
    assert isinstance(got, inbox.Stored) and got.sender == "a\nb@x.example" and got.raw == RAW


def test_pending_is_oldest_first_and_skips_what_is_not_a_stored_message(tmp_path: Path) -> None:
    names = [_store(tmp_path) for _ in range(3)]
    d = tmp_path / "feedback"
    (d / ".123.0.x.msg").write_bytes(b"in progress")
    (d / "notes.txt").write_bytes(b"")
    os.symlink("/etc/passwd", d / "link.msg")
    (d / "rejected").mkdir(exist_ok=True)
    assert inbox.pending(tmp_path) == sorted(names) == names
    assert inbox.pending(tmp_path / "nowhere") == []


def test_store_is_durable_before_it_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[Path] = []
    real = atomic.fsync_dir
    monkeypatch.setattr(atomic, "fsync_dir", lambda p: (synced.append(p), real(p)))
    _store(tmp_path)
    assert synced == [tmp_path / "feedback"]


def test_a_failed_store_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "feedback").mkdir()

    def full(fd: int, data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic, "_write_all", full)
    with pytest.raises(OSError, match="No space left"):
        inbox.store(tmp_path, RAW, sender="", recipients=[], client="c")
    assert list((tmp_path / "feedback").iterdir()) == []


def test_load_refuses_files_it_did_not_write(tmp_path: Path) -> None:
    d = tmp_path / "feedback"
    d.mkdir()
    (d / "a.msg").write_bytes(b"From: x\r\n\r\nb")
    (d / "b.msg").write_bytes(inbox.MAGIC + b"{not json\nrest")
    (d / "c.msg").write_bytes(inbox.MAGIC + b'{"sender": ""}\nrest')
    (d / "d.msg").write_bytes(inbox.MAGIC + b"{}")
    assert "no VOLLEY-FEEDBACK envelope line" in str(inbox.load(tmp_path, "a.msg"))
    assert "unreadable envelope line: JSONDecodeError" in str(inbox.load(tmp_path, "b.msg"))
    assert "unreadable envelope line: KeyError" in str(inbox.load(tmp_path, "c.msg"))
    assert inbox.load(tmp_path, "d.msg") == "the envelope line does not end"
    with pytest.raises(FileNotFoundError):
        inbox.load(tmp_path, "gone.msg")


def test_remove_and_reject(tmp_path: Path) -> None:
    kept, gone = _store(tmp_path), _store(tmp_path)
    inbox.remove(tmp_path, gone)
    inbox.remove(tmp_path, gone)  # twice is fine
    final = inbox.reject(tmp_path, kept, "not a report: text/plain")
    rejected = tmp_path / "feedback" / "rejected"
    assert (rejected / final).read_bytes().endswith(RAW)
    assert (rejected / f"{final}.reason").read_text() == "not a report: text/plain"
    assert inbox.pending(tmp_path) == []
