"""engine.runtime.shaping_service: reports in, shaping records, counts, gauges and the
table broadcast out; a fake clock, a memory store, a real EventLog on a temp dir."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prometheus_client import generate_latest

from engine.config import Settings
from engine.config.shaping import ShapingSettings
from engine.runtime.shaping_service import ShapingService
from engine.shaping.adaptive import Shaper
from engine.shaping.rules import combine
from engine.shaping.store import MemoryShapingStore
from engine.telemetry.eventlog import EventLog, read_log
from engine.telemetry.export import Exporter


def _service(
    tmp_path: Path, exporter: Exporter
) -> tuple[ShapingService, list[tuple[Any, ...]], list[float], Path]:
    shaping = ShapingSettings(window=2.0, min_samples=10)
    settings = Settings(spool_path=tmp_path, log_path=tmp_path / "log.jsonl", shaping=shaping)
    shaper = Shaper(shaping, combine([]), MemoryShapingStore())
    sent: list[tuple[Any, ...]] = []
    now = [1_800_000_000.0]
    service = ShapingService(
        settings,
        shaper,
        EventLog(settings.log_path, None),
        exporter,
        lambda *m: sent.append(m),
        in_use=lambda site: 8,
        clock=lambda: now[0],
    )
    return service, sent, now, settings.log_path


def test_a_throttled_window_cuts_logs_and_tells_every_worker(tmp_path: Path) -> None:
    exporter = Exporter()
    service, sent, now, log = _service(tmp_path, exporter)
    throttled = [[421, "4.7.0", "too many connections", "connect"]] * 30
    service.on_report(["shaping", "mx.s.test", None, 10, None, 20, throttled, 0, 0.25])
    now[0] += 2.5
    service.on_report(["shaping", "mx.s.test", None, 10, None, 20, throttled, 0, 0.25])
    records = [r for r in read_log(log) if r["event"] == "shaping"]
    assert records and records[0]["kind"] == "decrease" and records[0]["key"] == "mx.s.test"
    assert records[0]["connections"] < 10
    kind, table = sent[-1]
    assert kind == "shaping_limits"
    assert table["mx.s.test"][0] == records[0]["connections"]
    assert service.table_message() == ["shaping_limits", table]
    metrics = generate_latest(exporter.registry)
    assert b'volley_shaping_connections{site="mx.s.test"}' in metrics
    assert b'volley_shaping_actions_total{kind="decrease"} 1.0' in metrics
    service.close()
