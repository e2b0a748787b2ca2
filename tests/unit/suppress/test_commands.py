"""engine.suppress.commands: `volley suppress` while Volley is stopped (the file itself),
and what it says when Volley runs without an admin API."""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

import pytest

from engine.cli import main


def run(capsys: pytest.CaptureFixture[str], spool: Path, *args: str) -> tuple[int, str, str]:
    code = main(["suppress", *args, "--spool", str(spool)])
    out, err = capsys.readouterr()
    return code, out, err


def test_while_stopped(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # the default log path is relative
    sp = tmp_path / "spool"
    assert run(capsys, sp, "add", "Bob@X.test", "--reason", "asked")[0] == 0
    assert run(capsys, sp, "add", "ann@y.test", "--scope", "news.test", "--expires", "1d")[0] == 0
    code, out, _ = run(capsys, sp, "check", "bob@x.test")
    assert code == 1 and "is suppressed (global, manual): asked" in out
    assert run(capsys, sp, "check", "ann@y.test")[0] == 0  # only for news.test
    assert run(capsys, sp, "check", "ann@y.test", "--sender-domain", "a.news.test")[0] == 1
    code, out, _ = run(capsys, sp, "list", "--json")
    assert [e["key"] for e in json.loads(out)["entries"]] == ["ann@y.test", "bob@x.test"]
    exported = tmp_path / "out.csv"
    assert run(capsys, sp, "export", str(exported))[0] == 0
    assert run(capsys, sp, "remove", "bob@x.test")[0] == 0
    assert run(capsys, sp, "check", "bob@x.test")[0] == 0
    code, out, _ = run(capsys, sp, "import", str(exported))
    assert code == 0 and "imported 2 entries" in out
    assert run(capsys, sp, "check", "bob@x.test")[0] == 1
    bad = tmp_path / "bad.csv"
    bad.write_text("address\nnot an address\n")
    code, _, err = run(capsys, sp, "import", str(bad))
    assert code == 1 and "line 2" in err
    code, _, err = run(capsys, sp, "add", "not an address")
    assert code == 2 and "not a domain name" in err
    lines = (tmp_path / "var/log/delivery.jsonl").read_text().splitlines()
    events = [json.loads(line)["event"] for line in lines]
    assert events.count("suppression_added") == 2 and "suppressions_imported" in events


def test_while_volley_runs_without_its_admin_api(tmp_path: Path, capsys) -> None:
    sp = tmp_path / "spool"
    sp.mkdir()
    fd = os.open(sp / "volley.pid", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)  # as `volley run` holds it
    try:
        cfg = tmp_path / "v.toml"
        cfg.write_text(f'[spool]\npath = "{sp}"\n[admin]\nlisten = ""\n')
        code = main(["suppress", "add", "a@b.test", "--config", str(cfg)])
        err = capsys.readouterr().err
        assert code == 1 and "admin API is needed" in err and "admin.listen is empty" in err
        assert not (sp / "suppression.db").exists()  # nothing written beside it
    finally:
        os.close(fd)
