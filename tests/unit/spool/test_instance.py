"""spool.instance: one owner per spool, the holder's pid in the refusal."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from spool.instance import PID_FILE, SpoolInUse, lock_instance


def test_a_second_owner_is_refused_with_the_pid_of_the_first(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from spool.instance import lock_instance; "
         "lock_instance(__import__('pathlib').Path(sys.argv[1])); print('locked', flush=True); "
         "sys.stdin.read()", str(tmp_path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])},
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(SpoolInUse, match=rf"in use by pid {holder.pid} ") as e:
            lock_instance(tmp_path)
        assert e.value.pid == holder.pid
    finally:
        holder.communicate("")  # the holder exits: its lock goes with it
    fd = lock_instance(tmp_path)  # a stale pid file is taken over
    try:
        assert (tmp_path / PID_FILE).read_text() == f"{os.getpid()}\n"
    finally:
        os.close(fd)


def test_the_spool_directory_is_created(tmp_path: Path) -> None:
    fd = lock_instance(tmp_path / "new" / "spool")
    os.close(fd)
    assert (tmp_path / "new" / "spool" / PID_FILE).exists()
