"""Fixtures shared by the admin tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.admin_fakes import Answer, Env, Workers


@pytest.fixture
def make(tmp_path: Path) -> Callable[..., Env]:
    def factory(ks: list[int] | None = None, answer: Answer | None = None) -> Env:
        return Env(tmp_path, Workers([0, 1] if ks is None else ks, answer))

    return factory
