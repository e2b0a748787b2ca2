"""Users file, scrypt hashes, constant-time checks, and the failed-attempt limiter."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from engine.smtpd import auth
from engine.smtpd.auth import (
    FailureLimiter,
    UsersFile,
    UsersFileError,
    check_username,
    hash_password,
    set_password,
    verify_password,
)


def test_a_hash_verifies_its_password_only_and_differs_each_time() -> None:
    h = hash_password(b"correct horse")
    assert h.startswith("$scrypt$ln=14,r=8,p=1$")
    assert verify_password(b"correct horse", h)
    assert not verify_password(b"correct horsE", h)
    assert hash_password(b"correct horse") != h  # a fresh salt
    assert not verify_password(b"x", "plain text")
    assert not verify_password(b"x", "$scrypt$ln=30,r=8,p=1$AAAA$AAAA")  # refused, not run


def test_set_password_adds_changes_and_keeps_the_file_private(tmp_path: Path) -> None:
    path = tmp_path / "etc" / "users"
    assert set_password(path, "alice", b"one") is True
    assert set_password(path, "bob", b"two") is True
    assert set_password(path, "alice", b"three") is False
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    users = UsersFile(path)
    assert sorted(users.users()) == ["alice", "bob"]
    assert users.check("alice", b"three") and not users.check("alice", b"one")
    assert not users.check("carol", b"three")
    with pytest.raises(ValueError):
        set_password(path, "no:colons", b"x")


def test_the_file_is_read_again_when_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "users"
    set_password(path, "alice", b"one")
    users = UsersFile(path)
    assert users.check("alice", b"one")
    set_password(path, "dave", b"four")  # a new file (atomic replace): a new inode
    assert users.check("dave", b"four")


def test_comments_and_blank_lines_are_skipped_and_a_bad_line_is_named(tmp_path: Path) -> None:
    path = tmp_path / "users"
    path.write_text(f"# who may submit\n\nalice:{hash_password(b'pw')}\n")
    assert list(UsersFile(path).users()) == ["alice"]
    path.write_text("# x\nalice:not-a-hash\n")
    with pytest.raises(UsersFileError, match="line 2"):
        UsersFile(path).users()
    with pytest.raises(UsersFileError):
        UsersFile(tmp_path / "missing").users()
    with pytest.raises(UsersFileError):
        set_password(path, "bob", b"x")  # a file we cannot read back is not rewritten


def test_an_unknown_user_costs_a_full_scrypt_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "users"
    set_password(path, "alice", b"pw")
    checked: list[str] = []
    real = auth.verify_password

    def spy(password: bytes, encoded: str) -> bool:
        checked.append(encoded)
        return real(password, encoded)

    monkeypatch.setattr(auth, "verify_password", spy)
    assert not UsersFile(path).check("nobody", b"pw")
    assert checked and checked[0].startswith("$scrypt$ln=14")


@pytest.mark.parametrize("name", ["", "a b", "a:b", "tab\there", "x" * 256])
def test_bad_user_names(name: str) -> None:
    assert check_username(name) is not None


def test_the_limiter_blocks_after_the_limit_within_the_window() -> None:
    lim = FailureLimiter(limit=3, window=60.0)
    for t in (0.0, 1.0, 2.0):
        assert not lim.blocked("192.0.2.1", t)
        lim.failed("192.0.2.1", t)
    assert lim.blocked("192.0.2.1", 3.0)
    assert not lim.blocked("192.0.2.2", 3.0)
    assert not lim.blocked("192.0.2.1", 60.5)  # the first failure left the window


def test_the_limiter_stays_bounded_under_a_spray_of_addresses() -> None:
    lim = FailureLimiter(limit=2, window=60.0, max_clients=100)
    for i in range(1000):
        lim.failed(f"10.0.{i // 256}.{i % 256}", float(i) / 1000)
    assert len(lim._failures) <= 100
