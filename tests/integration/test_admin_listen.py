"""admin.listen: a busy or malformed address stops `volley run` with one line and status
2 before any worker starts; "" turns the API off (and the CLI says so)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from tests.support.volley import REPO, to_toml


def run_volley(v, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    v.config_path.write_text(to_toml(v.config))
    return subprocess.run(
        [sys.executable, "-m", "engine", "run", "--config", str(v.config_path)],
        cwd=v.root,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def test_a_busy_admin_listen_is_one_line_and_status_2(volley) -> None:
    v = volley(start=False)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", v.admin_port))
        busy.listen()
        got = run_volley(v)
    assert got.returncode == 2, got.stderr
    assert (
        got.stderr.strip()
        == f"volley: admin.listen 127.0.0.1:{v.admin_port}: Address already in use"
    )
    assert not list((v.spool / "queue").glob("*.lock"))  # no worker ever started


def test_a_malformed_admin_listen_is_a_configuration_error(volley) -> None:
    v = volley(start=False)
    v.config["admin"]["listen"] = "127.0.0.1"
    got = run_volley(v)
    assert got.returncode == 2
    assert got.stderr.strip().startswith("volley: configuration error: admin.listen:")
    assert "Traceback" not in got.stderr


def test_an_empty_admin_listen_turns_the_api_off(volley) -> None:
    v = volley(start=False)
    v.config["admin"]["listen"] = ""
    v.start()
    assert not (v.spool / "admin.token").exists()
    got = v.cli("flush")
    assert got.returncode == 1 and "admin API is off" in got.stderr
    assert v.stop() == 0
