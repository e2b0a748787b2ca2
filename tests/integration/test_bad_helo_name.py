"""Issue #14, finding 8: a bad smtp.helo_name is refused at start, in one line.

"mail_out.example.com" passed validation; EHLO then raised after every TCP connect, the
socket was never closed ("Too many open files" within 2 s) and every destination was hit.
Postfix refuses to start on a bad myhostname; so does `volley run`.
"""

from __future__ import annotations

import subprocess
import sys

from tests.support.volley import REPO, to_toml


def test_volley_run_refuses_a_bad_helo_name(tmp_path) -> None:
    config = tmp_path / "volley.toml"
    config.write_text(
        to_toml(
            {
                "spool": {"path": str(tmp_path / "spool")},
                "smtp": {"helo_name": "mail_out.example.com"},
                "metrics": {"listen": "127.0.0.1:0"},
            }
        )
    )
    done = subprocess.run(
        [sys.executable, "-m", "engine", "run", "--config", str(config)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "smtp.helo_name" in lines[0] and "mail_out.example.com" in lines[0]
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "spool").exists()  # refused before anything was touched
