"""engine.runtime.egressdb: the warm-up quota written through to <spool>/egress.db and
read back after a restart on the same UTC day."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from engine.runtime.egressdb import QuotaDb, QuotaDbError
from engine.shaping.egress import DAY

TODAY = 20_000
NOW = TODAY * DAY + 600.0


def test_counts_survive_a_restart_the_same_day(tmp_path: Path) -> None:
    db = QuotaDb.open(tmp_path, NOW)
    assert db.grant("ip1", TODAY, 10, 4, holder=0).granted == 4
    assert db.grant("ip1", TODAY, 10, 4, holder=1).granted == 4
    db.give_back("ip1", TODAY, 4, 1, holder=0)  # sent 3
    db.close()  # holder 1 never gave back (its worker died with the supervisor)
    again = QuotaDb.open(tmp_path, NOW + 60)
    assert again.used("ip1", TODAY) == 7
    assert again.grant("ip1", TODAY, 10, 4, holder=0).granted == 3
    again.close()


def test_days_older_than_yesterday_are_forgotten(tmp_path: Path) -> None:
    db = QuotaDb.open(tmp_path, NOW)
    db.grant("ip1", TODAY, 10, 4, holder=0)
    db.grant("ip1", TODAY + 1, 10, 5, holder=0)  # a new day: today becomes yesterday
    assert db.used("ip1", TODAY) == 4  # a connection from before midnight may give back
    db.grant("ip1", TODAY + 2, 10, 1, holder=0)
    assert db.used("ip1", TODAY) == 0
    db.close()
    rows = sqlite3.connect(tmp_path / "egress.db").execute("SELECT day, used FROM quota").fetchall()
    assert sorted(rows) == [(TODAY + 1, 5), (TODAY + 2, 1)]
    later = QuotaDb.open(tmp_path, (TODAY + 3) * DAY)
    assert later.used("ip1", TODAY + 1) == 0 and later.used("ip1", TODAY + 2) == 1
    later.close()


def test_a_file_that_cannot_be_opened_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "egress.db").mkdir()
    with pytest.raises(QuotaDbError, match=r"egress\.db: unable to open"):
        QuotaDb.open(tmp_path, NOW)


def test_a_failed_write_is_reported_once_and_counting_goes_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = QuotaDb.open(tmp_path, NOW)
    db.close()  # every write now fails
    assert db.grant("ip1", TODAY, 10, 4, holder=0).granted == 4
    assert db.grant("ip1", TODAY, 10, 4, holder=0).granted == 4
    assert db.used("ip1", TODAY) == 8
    err = capsys.readouterr().err
    assert err.count("cannot record the warm-up quota") == 1, err
