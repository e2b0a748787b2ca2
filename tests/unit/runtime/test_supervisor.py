"""engine.runtime.supervisor: start-up readiness (`_started`) with stand-in workers.

The processes themselves are covered end to end (tests/integration/test_worker_start_failure.py,
test_workdir_*.py); here the waiting logic runs without them, with a short notice period.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from engine.config import Settings
from engine.runtime import supervisor
from engine.runtime.supervisor import Supervisor, WorkerHandle
from tests.support.net import async_wait_for


def make(tmp_path: Path, workers: int) -> Supervisor:
    sup = Supervisor(Settings(workers=workers, spool_path=tmp_path / "spool"))
    for k in range(workers):
        sup.workers[k] = WorkerHandle(k)
    return sup


async def test_started_once_every_worker_is_ready(tmp_path: Path) -> None:
    sup = make(tmp_path, 2)
    task = asyncio.create_task(sup._started())
    sup.workers[0].ready.set()
    await asyncio.sleep(0)
    assert not task.done()
    sup.workers[1].ready.set()
    assert await asyncio.wait_for(task, 5) is True


async def test_a_late_worker_gets_notices_not_a_false_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(supervisor, "READY_NOTICE", 0.01)
    sup = make(tmp_path, 2)
    sup.workers[0].ready.set()
    task = asyncio.create_task(sup._started())
    err = ""

    def notices() -> bool:
        nonlocal err
        err += capsys.readouterr().err
        return "still waiting" in err

    await async_wait_for(notices, timeout=5)
    assert "still waiting for worker(s) 1 to finish" in err, err
    assert not task.done()
    sup.workers[1].ready.set()
    assert await asyncio.wait_for(task, 5) is True


async def test_a_worker_that_died_before_ready_is_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sup = make(tmp_path, 2)
    sup.workers[0].ready.set()
    h = sup.workers[1]
    h.stderr.add(b"Traceback (most recent call last):\nOSError: [Errno 5] boom\n")
    task = asyncio.create_task(sup._started())
    sup.start_failed.append(h)
    sup._start_failure.set()
    assert await asyncio.wait_for(task, 5) is False
    err = capsys.readouterr().err
    assert "volley: worker 1 could not start (exit status None): OSError: [Errno 5] boom" in err


async def test_a_stop_during_start_up_ends_the_wait(tmp_path: Path) -> None:
    sup = make(tmp_path, 1)
    task = asyncio.create_task(sup._started())
    sup.stopping.set()
    assert await asyncio.wait_for(task, 5) is False
    assert sup.start_failed == []
