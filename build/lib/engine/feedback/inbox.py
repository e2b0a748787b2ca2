"""<spool>/feedback/: messages to bounce domains, kept durably until they are processed.

Responsible for: `store` - the call the SMTP listener (engine.smtpd) makes for a message
addressed to one of `smtpd.bounce_domains` before it answers 250, and that any other
collector (a script fetching a bounce mailbox) may make too - and, for the processor
(engine.feedback.service), listing what waits, loading one file, removing it, and
moving an unreadable one aside to feedback/rejected/ with a `.reason`.
Not responsible for: parsing the report (engine.feedback.parse) or logging it.

File format: one file per message, `<ns since the epoch, 16 hex>-<64 random bits>.msg`,
holding one line `VOLLEY-FEEDBACK 1 {json}\\n` (sender, recipients, client, received: the
envelope, which the message itself does not carry) and then the message exactly as
received.  JSON escapes every control character, so the first "\\n" ends the line.

Durability: `store` writes `.<pid>.<seq>.<name>` (spool.atomic.write_tmp: O_EXCL, mode
0600, fsync), renames it into place and fsyncs feedback/ before returning: a kill -9 or
a power cut after the listener's 250 loses nothing.  `remove` does not fsync: a removal
lost in a power cut brings a processed report back, which is logged twice, never lost.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from spool import atomic
from spool.layout import Layout
from spool.shard import move_with_reason

__all__ = ["MAGIC", "SUFFIX", "Stored", "load", "pending", "reject", "remove", "store"]

MAGIC = b"VOLLEY-FEEDBACK 1 "
SUFFIX = ".msg"
_MAX_HEADER = 1 << 20  # the envelope line: 1 000 recipients of 256 octets fit 4 times over


@dataclass(frozen=True, slots=True)
class Stored:
    """One stored message: its envelope and its bytes as received."""

    name: str
    raw: bytes
    sender: str
    recipients: tuple[str, ...]
    client: str
    received: float  # epoch seconds, when `store` was called


def store(
    spool_root: Path, raw: bytes, *, sender: str, recipients: Sequence[str], client: str
) -> None:
    """Durably write one message addressed to a bounce domain into <spool>/feedback/.

    Blocking (a write and two fsyncs): call it from a thread, not an event loop.

    Args:
        raw: the message as received (after DATA, dot-unstuffed).
        sender: the MAIL FROM address ("" for the null sender, as DSNs have).
        recipients: the RCPT TO addresses (at the bounce domains).
        client: who sent it, e.g. the peer's IP address, for the log.

    Raises:
        OSError: the file could not be made durable (ENOSPC, EIO, ...); nothing is left.
    """
    now = time.time()
    envelope = {
        "sender": sender,
        "recipients": list(recipients),
        "client": client,
        "received": now,
    }
    data = MAGIC + json.dumps(envelope, ensure_ascii=True).encode("ascii") + b"\n" + raw
    directory = Layout(spool_root).feedback
    name = f"{time.time_ns():016x}-{secrets.token_hex(8)}{SUFFIX}"
    try:
        tmp = atomic.write_tmp(directory, name, data)
    except FileNotFoundError:  # a spool that `volley run` has not started on yet
        directory.mkdir(parents=True, exist_ok=True)
        tmp = atomic.write_tmp(directory, name, data)
    atomic.replace(tmp.path, directory / name)


def pending(spool_root: Path) -> list[str]:
    """The stored messages waiting, oldest first (names: their time comes first)."""
    try:
        with os.scandir(Layout(spool_root).feedback) as it:
            names = [
                e.name
                for e in it
                if e.name.endswith(SUFFIX)
                and not e.name.startswith(".")
                and e.is_file(follow_symlinks=False)
            ]
    except FileNotFoundError:
        return []
    names.sort()
    return names


def load(spool_root: Path, name: str) -> Stored | str:
    """The stored message `name`, or why it cannot be read (then it should be rejected).

    Raises:
        FileNotFoundError: it is gone (removed meanwhile).
    """
    path = Layout(spool_root).feedback / name
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return "not a regular file"
        with os.fdopen(fd, "rb", closefd=False) as fh:
            data = fh.read()
    finally:
        os.close(fd)
    if not data.startswith(MAGIC):
        return "no VOLLEY-FEEDBACK envelope line (not written by engine.feedback.inbox.store)"
    end = data.find(b"\n", 0, _MAX_HEADER)
    if end < 0:
        return "the envelope line does not end"
    try:
        env = json.loads(data[len(MAGIC) : end])
        recipients = tuple(str(r) for r in env["recipients"])
        return Stored(
            name=name,
            raw=data[end + 1 :],
            sender=str(env["sender"]),
            recipients=recipients,
            client=str(env["client"]),
            received=float(env["received"]),
        )
    except (ValueError, KeyError, TypeError) as e:
        return f"unreadable envelope line: {type(e).__name__}: {e}"[:300]


def remove(spool_root: Path, name: str) -> None:
    """Delete a processed message (no fsync: see the module docstring)."""
    atomic.unlink_quietly(Layout(spool_root).feedback / name)


def reject(spool_root: Path, name: str, reason: str) -> str:
    """Move `name` to feedback/rejected/ with `<final>.reason`, durably; the final name."""
    layout = Layout(spool_root)
    layout.feedback_rejected.mkdir(parents=True, exist_ok=True)
    return move_with_reason(layout.feedback / name, layout.feedback_rejected, name, reason)
