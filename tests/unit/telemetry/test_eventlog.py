from pathlib import Path

from engine.telemetry.eventlog import EventLog, read_log, repair_tail


def test_records_are_lines_and_unwritable_names_do_not_break_the_log(tmp_path: Path) -> None:
    path = tmp_path / "log" / "delivery.jsonl"
    log = EventLog(path, worker=3)
    log.add("received", 1.5, rcpt="a@x.test", drop="bad-\udcfe.eml")
    log.add("delivered", 2.0, rcpt="a@x.test", code=250)
    log.close()
    recs = list(read_log(path))
    assert [(r["event"], r["worker"], r["ts"]) for r in recs] == [
        ("received", 3, 1.5),
        ("delivered", 3, 2.0),
    ]
    assert recs[0]["drop"] == "bad-\udcfe.eml"  # the JSON escape round-trips losslessly


def test_torn_tail_is_cut_at_start_and_ended_by_a_late_writer(tmp_path: Path) -> None:
    path = tmp_path / "delivery.jsonl"
    path.write_bytes(b'{"event":"delivered","ts":1}\n{"event":"deliv')
    assert [r["event"] for r in read_log(path)] == ["delivered"]  # torn tail skipped
    assert repair_tail(path) == len(b'{"event":"deliv')
    assert path.read_bytes() == b'{"event":"delivered","ts":1}\n'
    assert repair_tail(path) == 0
    # A worker restarted while others run does not truncate; it ends the torn line.
    with open(path, "ab") as fh:
        fh.write(b'{"torn')
    log = EventLog(path, worker=0)
    log.add("received", 3.0)
    log.close()
    assert [r["event"] for r in read_log(path)] == ["delivered", "received"]
    assert repair_tail(tmp_path / "missing") == 0
