"""Fixtures shared by the spool tests."""

import os
import stat
from pathlib import Path

import pytest

from spool.store import Spool


@pytest.fixture
def fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record every fsync as "file:<name>" or "dir:<name>", then really do it."""
    calls: list[str] = []
    real = os.fsync

    def spy(fd: int) -> None:
        kind = "dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file"
        calls.append(f"{kind}:{os.path.basename(os.readlink(f'/proc/self/fd/{fd}'))}")
        real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    return calls


@pytest.fixture
def sp(tmp_path: Path) -> Spool:
    """A spool tree with 2 shards under tmp_path/spool."""
    s = Spool(tmp_path / "spool")
    s.ensure(2)
    return s
