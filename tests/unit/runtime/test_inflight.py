from pathlib import Path

from engine.runtime import inflight
from engine.runtime.inflight import InflightJournal


def test_started_but_not_done_survive_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "0.inflight"
    j = InflightJournal(path)
    for n in ("a@x.test", "b@x.test", "c@y.test"):
        j.start(n)
    j.done("b@x.test")
    # no close(): the process "dies" here
    assert InflightJournal.read(path) == {"a@x.test", "c@y.test"}


def test_a_new_journal_starts_empty_and_torn_line_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "0.inflight"
    j = InflightJournal(path)
    j.start("a@x.test")
    j.close()
    with open(path, "ab") as fh:
        fh.write(b"+torn-without-newl")
    assert InflightJournal.read(path) == {"a@x.test"}
    InflightJournal(path).close()
    assert InflightJournal.read(path) == set()
    assert InflightJournal.read(tmp_path / "missing") == set()


def test_compaction_keeps_only_live_names(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(inflight, "COMPACT_AT", 200)
    path = tmp_path / "0.inflight"
    j = InflightJournal(path)
    j.start("keep@x.test")
    for i in range(50):
        j.start(f"m{i}@x.test")
        j.done(f"m{i}@x.test")
    assert path.stat().st_size < 400
    assert InflightJournal.read(path) == {"keep@x.test"}


def test_a_lazy_done_rides_with_the_next_start(tmp_path: Path) -> None:
    path = tmp_path / "0.inflight"
    j = InflightJournal(path)
    j.start("a@x.test")
    j.done("a@x.test", lazy=True)
    # Not written yet: a crash now shows "a" in flight (harmless once it left the queue).
    assert InflightJournal.read(path) == {"a@x.test"}
    j.start("b@x.test")  # one write carries "-a" and "+b"
    assert path.read_bytes() == b"+a@x.test\n-a@x.test\n+b@x.test\n"
    assert InflightJournal.read(path) == {"b@x.test"}
    j.done("b@x.test")  # not lazy (the entry stays queued): written at once
    assert InflightJournal.read(path) == set()
    j.start("c@x.test")
    j.done("c@x.test", lazy=True)
    j.close()  # a clean close writes what waits
    assert InflightJournal.read(path) == set()


def test_compaction_forgets_lazy_lines_of_names_no_longer_live(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(inflight, "COMPACT_AT", 200)
    path = tmp_path / "0.inflight"
    j = InflightJournal(path)
    j.start("keep@x.test")
    for i in range(50):
        j.start(f"m{i}@x.test")
        j.done(f"m{i}@x.test", lazy=True)
    assert path.stat().st_size < 400
    # At most the last name waits lazily: it reads as in flight until the next write.
    assert InflightJournal.read(path) <= {"keep@x.test", "m49@x.test"}
    assert "keep@x.test" in InflightJournal.read(path)
    j.close()
    assert InflightJournal.read(path) == {"keep@x.test"}
