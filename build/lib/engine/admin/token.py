"""The admin API's bearer token: one secret in a file only Volley's user can read.

Responsible for: creating the token file at first start (`ensure_token`), reading it
(`read_token`, for the server and the CLI), and comparing a presented token in constant
time (`token_matches`).
Not responsible for: HTTP (engine.admin.server) or where the file is (settings:
`admin.token_file`, default `<spool>/admin.token`).

Why a file and not a configured secret: the CLI finds it from the same --config/--spool
as `volley run`, so the commands work out of the box for the user who runs Volley, and
file permissions (0600) keep everyone else out — the model of Postfix's `postqueue`
(set-gid `postdrop`) without a set-gid binary.

Creation is atomic and exclusive: the token is written and fsynced to a temporary file
opened with O_CREAT|O_EXCL and mode 0600, then hard-linked to the final name, which fails
if the name exists.  So a reader never sees a half-written token, and two supervisors
starting at once end up with the same one (the loser reads the winner's).
"""

from __future__ import annotations

import contextlib
import errno
import hmac
import os
import secrets
import stat
from pathlib import Path

__all__ = [
    "TOKEN_BYTES",
    "TokenError",
    "ensure_token",
    "loose_permissions",
    "read_token",
    "token_matches",
]

TOKEN_BYTES = 32  # 256 bits from the OS CSPRNG: `secrets` module's recommendation and more
MAX_TOKEN_FILE = 4096  # a token file bigger than this is not one of ours


class TokenError(Exception):
    """The token file is unusable (one line for the operator)."""


def read_token(path: Path) -> str:
    """The token in `path`.  Raises FileNotFoundError / PermissionError as they come (the
    caller words them for its user) and TokenError for an empty or oversized file."""
    with open(path, "rb") as fh:
        data = fh.read(MAX_TOKEN_FILE + 1)
    token = data.decode("utf-8", "replace").strip()
    if not token or len(data) > MAX_TOKEN_FILE or any(c.isspace() for c in token):
        raise TokenError(f"{path}: not a token file (expected one line with the token)")
    return token


def ensure_token(path: Path) -> tuple[str, bool]:
    """The token in `path`, creating the file (mode 0600) with a new random token if it
    does not exist; returns (token, created)."""
    with contextlib.suppress(FileNotFoundError):
        return read_token(path), False
    token = secrets.token_urlsafe(TOKEN_BYTES)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # the umask can only remove bits, but say it explicitly
        os.write(fd, (token + "\n").encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)
    except OSError as e:
        if e.errno != errno.EEXIST:
            raise
        return read_token(path), False  # created by someone else meanwhile: theirs wins
    finally:
        tmp.unlink()
    dirfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dirfd)  # the name survives a power cut, as the token the CLI reads
    finally:
        os.close(dirfd)
    return token, True


def loose_permissions(path: Path) -> bool:
    """True if users other than the owner may read or write the token file."""
    return bool(stat.S_IMODE(os.stat(path).st_mode) & 0o077)


def token_matches(expected: str, presented: str | None) -> bool:
    """Constant-time comparison: the time taken says nothing about how much matched."""
    if presented is None:
        return False
    return hmac.compare_digest(expected.encode("utf-8"), presented.encode("utf-8", "replace"))
