"""Fakes for the admin tests: live workers that answer directives, and an AdminService
over them with a fake clock, a real SQLite store, log and exporter (tests/unit/admin)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client import generate_latest

from engine.admin.service import AdminService
from engine.admin.suspensions import SqliteSuspensionStore
from engine.telemetry.eventlog import EventLog, read_log
from engine.telemetry.export import Exporter

T = 1_800_000_000.0  # the fake clock's start
Answer = Callable[[int, str, dict[str, Any]], dict[str, Any] | None]


class Workers:
    """Live workers that record what they are sent and answer directives (or not)."""

    def __init__(self, ks: list[int], answer: Answer | None = None) -> None:
        self.ks = ks
        self.answer = answer
        self.sent: list[tuple[Any, ...]] = []
        self.service: AdminService | None = None

    def live(self) -> list[int]:
        return list(self.ks)

    def send(self, k: int, *msg: Any) -> None:
        self.sent.append((k, *msg))
        if msg[0] == "directive" and self.answer is not None:
            _, req, action, args = msg
            got = self.answer(k, action, args)
            if got is not None:
                assert self.service is not None
                asyncio.get_running_loop().call_soon(self.service.on_reply, k, req, got)


class Env:
    def __init__(self, tmp_path: Path, workers: Workers) -> None:
        self.now = T
        self.log_path = tmp_path / "delivery.jsonl"
        self.exporter = Exporter()
        self.workers = workers
        self.service = AdminService(
            store=SqliteSuspensionStore(tmp_path / "state.db"),
            log=EventLog(self.log_path, None),
            log_path=self.log_path,
            exporter=self.exporter,
            send=workers.send,
            live=workers.live,
            clock=lambda: self.now,
        )
        workers.service = self.service

    def records(self) -> list[dict[str, Any]]:
        return list(read_log(self.log_path)) if self.log_path.exists() else []

    def metrics(self) -> str:
        return generate_latest(self.exporter.registry).decode()
