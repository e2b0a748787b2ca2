"""engine.runtime.spawn: the worker's command line and the stderr tail kept for start-up errors."""

from __future__ import annotations

import asyncio
import io
import subprocess
import sys
from pathlib import Path

from engine.runtime.spawn import TAIL_BYTES, WORKER_MODULE, StderrTail, relay, worker_argv


def test_worker_argv_keeps_the_working_directory_off_sys_path() -> None:
    argv = worker_argv(3, 7)
    assert argv == [sys.executable, "-P", "-m", WORKER_MODULE, "--shard", "3", "--fd", "7"]


def test_p_flag_really_leaves_the_working_directory_out(tmp_path: Path) -> None:
    # What the flag promises, checked on this interpreter: a package in the working
    # directory is not importable, while the installed `spool` still is.
    (tmp_path / "spool").mkdir()
    (tmp_path / "shadow_me.py").write_text("")
    code = "import importlib.util as u, spool; print(u.find_spec('shadow_me'), spool.Spool)"
    got = subprocess.run(
        [sys.executable, "-P", "-c", code], cwd=tmp_path, capture_output=True, text=True
    )
    assert got.returncode == 0, got.stderr
    assert got.stdout.startswith("None <class 'spool.store.Spool'>"), got.stdout


def test_tail_keeps_the_last_bytes_and_names_the_error() -> None:
    tail = StderrTail(limit=64)
    tail.add(b"x" * 100 + b"\n")
    tail.add(b"Traceback (most recent call last):\n  File 'w.py'\nOSError: boom\n\n")
    assert len(tail.text()) == 64
    assert tail.text().endswith("OSError: boom\n\n")
    assert tail.error() == "OSError: boom"


def test_empty_tail_has_no_error() -> None:
    assert StderrTail().error() == ""
    assert StderrTail(limit=TAIL_BYTES).text() == ""


def test_tail_survives_invalid_utf8() -> None:
    tail = StderrTail()
    tail.add(b"bad \xff byte\n")
    assert tail.error() == "bad \ufffd byte"


async def test_relay_copies_everything_and_keeps_the_tail() -> None:
    stream = asyncio.StreamReader()
    data = b"".join(b"line %d\n" % i for i in range(20000))  # > TAIL_BYTES, several reads
    stream.feed_data(data)
    stream.feed_eof()
    out = io.BytesIO()
    tail = StderrTail()
    await relay(stream, tail, out)
    assert out.getvalue() == data
    assert tail.text().encode() == data[-TAIL_BYTES:]
    assert tail.error() == "line 19999"


async def test_relay_keeps_the_tail_when_its_output_is_gone() -> None:
    stream = asyncio.StreamReader()
    stream.feed_data(b"first\n")
    stream.feed_data(b"ValueError: last\n")
    stream.feed_eof()
    out = io.BytesIO()
    out.close()  # writing raises ValueError, as a closed stderr does
    tail = StderrTail()
    await relay(stream, tail, out)
    assert tail.error() == "ValueError: last"
