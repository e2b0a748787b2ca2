"""Fixtures shared by the end-to-end scenarios: the mini internet and a Volley factory."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.internet import MiniInternet
from tests.support.volley import Volley


@pytest.fixture
def net() -> Iterator[MiniInternet]:
    with MiniInternet() as n:
        yield n


@pytest.fixture
def volley(net: MiniInternet, tmp_path: Path) -> Iterator[Callable[..., Volley]]:
    """Factory: volley(workers=2, config={...}, command=..., cwd=...) -> a started
    `volley run` process."""
    started: list[Volley] = []

    def make(
        *,
        workers: int = 2,
        config: dict[str, Any] | None = None,
        start: bool = True,
        **how: Any,  # command, cwd, pythonpath: how the process is started (Volley)
    ) -> Volley:
        v = Volley(
            tmp_path / f"v{len(started)}",
            dns=net.dns.address,
            smtp_port=net.port,
            workers=workers,
            config=config,
            **how,
        )
        v.root.mkdir(parents=True, exist_ok=True)
        started.append(v)
        return v.start() if start else v

    yield make
    for v in started:
        if v.proc is not None and v.proc.poll() is None:
            v.kill()
