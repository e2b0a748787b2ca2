"""engine.telemetry.eventlog: records, torn tails, the outcome fast path, batching."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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


# -- the outcome record and batching ------------------------------------------------------
OUTCOME_FIELDS = (
    "id msgid sender rcpt domain mx ip code enhanced text attempt queued_at in_queue".split()
)


def _outcome_line(log_path: Path, event: str, ts: float, *values: object) -> tuple[str, str]:
    """(add_outcome's line, add's line) for the same record; two values more than
    OUTCOME_FIELDS are a failure's category and rule."""
    fast = EventLog(log_path, worker=7)
    fast.add_outcome(event, ts, *values)  # type: ignore[arg-type]
    slow = EventLog(log_path, worker=7)
    names = OUTCOME_FIELDS + ["category", "category_rule"][: len(values) - len(OUTCOME_FIELDS)]
    slow.add(event, ts, **dict(zip(names, values, strict=True)))
    lines = fast._pending[0], slow._pending[0]
    fast.close()
    slow.close()
    return lines


def test_outcome_record_is_exactly_what_add_writes(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    values = (
        "0123abcd", "<m1@x.test>", "s@x.test", "r@y.test", "y.test", "mx.y.test",
        "127.0.0.2", 250, "2.0.0", "2.0.0 Ok: queued as 4F3", 1, 1764172000.5, 0.123,
    )  # fmt: skip
    fast, slow = _outcome_line(path, "delivered", 1764172000.6234567, *values)
    assert fast == slow
    assert json.loads(fast)["ts"] == 1764172000.623457
    assert "category" not in json.loads(fast)  # a delivery has none: its line is unchanged
    failed = (*values[:7], 550, "5.1.1", "5.1.1 no such user", *values[-3:],
              "InvalidRecipient", "iana-invalid-recipient")  # fmt: skip
    fast, slow = _outcome_line(path, "bounced", 1764172000.7, *failed)
    assert fast == slow
    record = json.loads(fast)
    assert (record["category"], record["category_rule"]) == (
        "InvalidRecipient",
        "iana-invalid-recipient",
    )


_META = st.one_of(st.none(), st.text(), st.integers(), st.booleans())  # from the spool


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    strs=st.lists(st.text(), min_size=5, max_size=5),
    meta=st.lists(_META, min_size=2, max_size=2),
    optional=st.lists(st.one_of(st.none(), st.text()), min_size=2, max_size=2),
    category=st.one_of(st.none(), st.tuples(st.text(), st.text())),
    nums=st.lists(
        st.one_of(st.integers(-(2**70), 2**70), st.floats(allow_nan=True), st.booleans()),
        min_size=4,
        max_size=4,
    ),
    ts=st.floats(allow_nan=True),
)
def test_outcome_record_matches_json_dumps_for_any_values(
    tmp_path: Path,
    strs: list[str],
    meta: list[object],
    optional: list[str | None],
    nums: list[object],
    ts: float,
    category: tuple[str, str] | None,
) -> None:
    # Lone surrogates (undecodable drop names), quotes, control characters, NaN and
    # infinities, huge ints, bools where numbers belong, anything the spool's meta may
    # hold for msgid and sender: all as json.dumps has them.
    eid, rcpt, domain, enhanced, text = strs
    msgid, sender = meta
    mx, ip = optional
    code, attempt, queued_at, in_queue = nums
    values = (eid, msgid, sender, rcpt, domain, mx, ip, code, enhanced, text, attempt,
              queued_at, in_queue, *(category or ()))  # fmt: skip
    fast, slow = _outcome_line(tmp_path / "log.jsonl", "deferred", ts, *values)
    assert fast == slow


def test_follow_ups_run_after_their_lines_reach_the_writer(tmp_path: Path) -> None:
    calls: list[tuple[str, object]] = []
    log = EventLog(
        tmp_path / "log.jsonl",
        worker=0,
        writer=lambda fd, data: calls.append(("write", data.count(b"\n"))),
        batch=3,
    )
    log.add("delivered", 1.0, id="a")
    log.then(lambda name: calls.append(("remove", name)), "a")
    log.add("delivered", 2.0, id="b")
    log.then(lambda name: calls.append(("remove", name)), "b")
    assert calls == [] and log.waiting == 4  # below the batch: nothing handed over yet
    log.add("delivered", 3.0, id="c")
    log.then(lambda name: calls.append(("remove", name)), "c")  # the third: a flush
    assert calls == [("write", 3), ("remove", "a"), ("remove", "b"), ("remove", "c")]
    assert log.waiting == 0
    log.then(lambda name: calls.append(("remove", name)), "d")  # no line of its own
    log.flush()  # the worker's timer
    assert calls[-1] == ("remove", "d")
    log.close()


def test_a_failed_write_drops_the_follow_ups_with_the_lines(tmp_path: Path) -> None:
    removed: list[str] = []

    def broken(fd: int, data: bytes) -> None:
        raise OSError(28, "No space left on device")

    log = EventLog(tmp_path / "log.jsonl", worker=0, writer=broken)
    log.add("delivered", 1.0, id="a")
    log.then(removed.append, "a")
    with pytest.raises(OSError):
        log.flush()
    assert removed == [] and log.waiting == 0  # the entry stays queued: sent again later
    log.then(removed.append, "b")
    log.flush()  # no lines: nothing to write, the follow-up runs
    assert removed == ["b"]
