"""SMTP AUTH credentials: the users file, password hashes, and the failed-attempt limit.

Responsible for:
  * the users file (`smtpd.users_file`): one `name:hash` line per user, `#` comments;
    read again whenever it changes on disk (`volley passwd` takes effect at the next AUTH,
    no SIGHUP needed), written atomically with mode 0600 (`set_password`);
  * hashes: scrypt from the standard library (`hashlib.scrypt`, RFC 7914) with a random
    16-byte salt, stored as `$scrypt$ln=14,r=8,p=1$<salt>$<hash>` (base64, the field
    layout of passlib's scrypt hashes); N = 2^14, r = 8 needs 16 MB and ~40 ms a check on
    this VM: cheap for one login per session, 25 guesses a second per core for a thief of
    the file.  Compared with `hmac.compare_digest` (constant time), and an unknown user
    costs the same scrypt run as a known one, so timing tells nobody which names exist;
  * `FailureLimiter`: at most `max_auth_failures` failed attempts per client address in
    a sliding `auth_failure_window`; beyond that AUTH is refused without checking (454),
    so the scrypt cost cannot be turned against us and guessing is slow.
Not responsible for: the AUTH exchange (engine.smtpd.protocol), running the check off the
event loop (engine.smtpd.server does), the command line (engine.smtpd.passwd).

Each worker process has its own FailureLimiter: the kernel spreads one client's
connections over the workers (SO_REUSEPORT), so the limit per address for the whole
instance is `workers` times the setting (documented in the README).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from collections import deque
from pathlib import Path

from spool import atomic

__all__ = [
    "FailureLimiter",
    "UsersFile",
    "UsersFileError",
    "check_username",
    "hash_password",
    "set_password",
    "verify_password",
]

LOG2_N = 14
R = 8
P = 1
KEY_LENGTH = 32
SALT_LENGTH = 16
# The memory scrypt needs is 128 * r * N bytes (16 MB here); OpenSSL refuses above its
# maxmem, 32 MB by default, so say what we need plus room.
_MAXMEM = 128 * R * (2**LOG2_N) + 2**20
_HASH = re.compile(
    r"\$scrypt\$ln=(\d{1,2}),r=(\d{1,2}),p=(\d{1,2})\$([A-Za-z0-9+/]+)\$([A-Za-z0-9+/]+)"
)
_USER = re.compile(r"[^\x00-\x20\x7f:]{1,255}")


class UsersFileError(Exception):
    """The users file cannot be read or has a malformed line (the message says which)."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: bytes, salt: bytes | None = None) -> str:
    salt = os.urandom(SALT_LENGTH) if salt is None else salt
    key = hashlib.scrypt(
        password, salt=salt, n=2**LOG2_N, r=R, p=P, maxmem=_MAXMEM, dklen=KEY_LENGTH
    )
    return f"$scrypt$ln={LOG2_N},r={R},p={P}${_b64(salt)}${_b64(key)}"


def verify_password(password: bytes, encoded: str) -> bool:
    """Whether `password` matches `encoded` (a hash_password result); False if malformed."""
    m = _HASH.fullmatch(encoded)
    if m is None:
        return False
    log2_n, r, p = int(m[1]), int(m[2]), int(m[3])
    if not (1 <= log2_n <= 20 and 1 <= r <= 16 and 1 <= p <= 4):
        return False  # a hand-edited line must not make us allocate gigabytes
    want = _unb64(m[5])
    got = hashlib.scrypt(
        password,
        salt=_unb64(m[4]),
        n=2**log2_n,
        r=r,
        p=p,
        maxmem=128 * r * 2**log2_n * p + 2**20,
        dklen=len(want),
    )
    return hmac.compare_digest(got, want)


# What an unknown user's password is checked against: the same work as a real check.
_DUMMY = hash_password(b"volley: no such user", salt=b"\0" * SALT_LENGTH)


def check_username(name: str) -> str | None:
    """Why `name` cannot be a user name (None if it can): no ":", space or control."""
    if _USER.fullmatch(name) is None:
        return 'a user name is 1-255 characters without ":", spaces or control characters'
    return None


def _parse(text: str, path: Path) -> dict[str, str]:
    users: dict[str, str] = {}
    for no, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, encoded = line.partition(":")
        if not sep or check_username(name) is not None or _HASH.fullmatch(encoded) is None:
            raise UsersFileError(f"{path}: line {no} is not 'name:$scrypt$...'")
        users[name] = encoded
    return users


class UsersFile:
    """The users file, re-read when its inode, size or mtime changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int, int] | None = None
        self._users: dict[str, str] = {}

    def users(self) -> dict[str, str]:
        """Name -> hash.  Raises UsersFileError when the file cannot be read."""
        try:
            st = os.stat(self.path)
            stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
            if stamp != self._stamp:
                self._users = _parse(self.path.read_text(encoding="utf-8"), self.path)
                self._stamp = stamp
        except (OSError, UnicodeDecodeError) as e:
            raise UsersFileError(f"{self.path}: {getattr(e, 'strerror', None) or e}") from None
        return self._users

    def check(self, name: str, password: bytes) -> bool:
        """Whether `name` exists and `password` is its password; as slow either way.
        Blocking (~40 ms of scrypt): call it in a thread.  Raises UsersFileError."""
        encoded = self.users().get(name)
        ok = verify_password(password, encoded or _DUMMY)
        return ok and encoded is not None


def set_password(path: Path, name: str, password: bytes) -> bool:
    """Add user `name` or change its password; True if it was new.  The file is
    replaced atomically (tmp, fsync, rename) with mode 0600; other lines are kept."""
    why = check_username(name)
    if why is not None:
        raise ValueError(why)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        lines = []
    _parse("\n".join(lines), path)  # refuse to rewrite a file we cannot read back
    entry = f"{name}:{hash_password(password)}"
    new = True
    for i, line in enumerate(lines):
        if line.strip().partition(":")[0] == name and not line.lstrip().startswith("#"):
            lines[i] = entry
            new = False
    if new:
        lines.append(entry)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = ("\n".join(lines) + "\n").encode("utf-8")
    tmp = atomic.write_tmp(path.parent, f".{path.name}", data)
    os.chmod(tmp.path, 0o600)
    os.replace(tmp.path, path)
    atomic.fsync_dir(path.parent)
    return new


class FailureLimiter:
    """Failed AUTH attempts per client address in a sliding window (time passed in)."""

    def __init__(self, limit: int, window: float, max_clients: int = 65_536) -> None:
        self.limit = limit
        self.window = window
        self._max_clients = max_clients
        self._failures: dict[str, deque[float]] = {}

    def blocked(self, client: str, now: float) -> bool:
        times = self._failures.get(client)
        if times is None:
            return False
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._failures[client]
            return False
        return len(times) >= self.limit

    def failed(self, client: str, now: float) -> None:
        if client not in self._failures and len(self._failures) >= self._max_clients:
            self._forget_old(now)
        self._failures.setdefault(client, deque(maxlen=self.limit)).append(now)

    def _forget_old(self, now: float) -> None:
        """Bounded memory under a spray of addresses: drop what the window expired, and
        if that is not enough, the addresses whose last failure is oldest."""
        for client in list(self._failures):
            self.blocked(client, now)
        if len(self._failures) >= self._max_clients:
            by_age = sorted(self._failures, key=lambda c: self._failures[c][-1])
            for client in by_age[: len(by_age) // 2]:
                del self._failures[client]
