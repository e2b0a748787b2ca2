"""engine.suppress.agent: a worker's parts, and the records of intake's results."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.config import Settings
from engine.runtime.intake import IntakeBatch, Suppressed
from engine.suppress.agent import SuppressionAgent
from engine.suppress.check import Hit
from engine.suppress.model import GLOBAL, Entry, Source
from engine.suppress.store import SqliteSuppressionStore, db_path
from engine.telemetry.eventlog import EventLog, read_log
from engine.telemetry.metrics import CheckedTally


def test_records_and_counts(tmp_path: Path) -> None:
    SqliteSuppressionStore(db_path(tmp_path)).close()  # the supervisor makes it first
    sent: list[Any] = []
    log = EventLog(tmp_path / "log.jsonl", 0)
    tally = CheckedTally()
    agent = SuppressionAgent(Settings(spool_path=tmp_path), sent.append, log, tally, lambda: 1.0)
    e = Entry("a@x.test", GLOBAL, "r", Source.UNSUBSCRIBE, 1.0)
    batch = IntakeBatch(
        suppressed=[Suppressed(Hit("A@x.test", e), "n@s.test", "s.test", "<m@s>", "d.eml")],
        headers=[("several_recipients", "<m@s>", "x.test", 2), ("added", "<m@s>", "y.test", 1)],
    )
    agent.record(batch, 5.0)
    log.flush()
    recs = list(read_log(tmp_path / "log.jsonl"))
    assert [r["event"] for r in recs] == ["suppressed", "unsubscribe_skipped"]
    assert recs[0]["rcpt"] == "A@x.test" and recs[0]["entry"] == "a@x.test"
    assert recs[0]["drop"] == "d.eml" and recs[0]["source"] == "unsubscribe"
    assert recs[1]["rcpt" + "s"] == 2
    counts = {(n, tuple(lb)): v for n, lb, v in tally.drain()[0]}
    assert counts[("volley_suppressed", ("unsubscribe",))] == 1
    assert counts[("volley_unsubscribe_headers", ("added",))] == 1
    agent.close()
