"""engine.admin.token: the token file is created 0600, atomically, once; comparisons are
constant-time and refuse what is missing."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from engine.admin.token import (
    TokenError,
    ensure_token,
    loose_permissions,
    read_token,
    token_matches,
)


def test_created_with_mode_0600_whatever_the_umask(tmp_path: Path) -> None:
    path = tmp_path / "admin.token"
    old = os.umask(0)
    try:
        token, created = ensure_token(path)
    finally:
        os.umask(old)
    assert created and len(token) >= 43  # 32 random bytes, base64url
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert not loose_permissions(path)
    assert read_token(path) == token
    assert os.listdir(tmp_path) == ["admin.token"]  # the temporary file is gone


def test_an_existing_token_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "admin.token"
    first, _ = ensure_token(path)
    assert ensure_token(path) == (first, False)
    assert ensure_token(tmp_path / "other.token")[0] != first  # random, not derived


def test_a_token_created_meanwhile_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two supervisors starting at once: the one whose link fails reads the other's."""
    path = tmp_path / "admin.token"
    real_link = os.link

    def racing_link(src: os.PathLike[str], dst: os.PathLike[str]) -> None:
        Path(dst).write_text("theirs\n")
        real_link(src, dst)  # EEXIST now

    monkeypatch.setattr(os, "link", racing_link)
    assert ensure_token(path) == ("theirs", False)
    assert os.listdir(tmp_path) == ["admin.token"]


def test_unusable_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(TokenError, match="not a token file"):
        read_token(empty)
    big = tmp_path / "big"
    big.write_text("x" * 5000)
    with pytest.raises(TokenError):
        read_token(big)
    with pytest.raises(FileNotFoundError):
        read_token(tmp_path / "missing")
    loose = tmp_path / "loose"
    loose.write_text("tok\n")
    loose.chmod(0o644)
    assert loose_permissions(loose)


def test_token_matches() -> None:
    assert token_matches("s3cret", "s3cret")
    for bad in (None, "", "s3cre", "s3cret!", "S3CRET", "s3cret\u00e9"):
        assert not token_matches("s3cret", bad)
