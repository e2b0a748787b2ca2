"""Submitting to Volley's SMTP listener in tests: config, users, certificates, raw sessions.

Responsible for: the `[smtpd]` config that turns the listener on at a free loopback port
(tests.support.volley's default config has it off), adding a user the way an admin does
(`volley passwd`, password on stdin), a certificate for STARTTLS / implicit TLS
(tests.support.tls_certs), and `RawSession`, a blocking byte-level client for what
smtplib will not send (bare LFs, over-long lines, smuggling probes).
Not responsible for: starting Volley (tests.support.volley) or the receiving side
(tests.support.internet).
"""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.support.net import free_port
from tests.support.tls_certs import write_self_signed
from tests.support.volley import REPO, Volley

__all__ = ["RawSession", "add_user", "listening", "tls_files"]


def listening(port: int | None = None, **smtpd: Any) -> dict[str, Any]:
    """Config turning the listener on at 127.0.0.1:`port` (a free one by default)."""
    port = port or free_port(["127.0.0.1"])
    return {"smtpd": {"listen": [f"127.0.0.1:{port}"], **smtpd}}


def port_of(v: Volley) -> int:
    return int(v.config["smtpd"]["listen"][0].rpartition(":")[2])


def tls_files(directory: Path) -> tuple[Path, Path]:
    """(certificate, key) for "127.0.0.1", which also serves as the client's CA file."""
    directory.mkdir(parents=True, exist_ok=True)
    return write_self_signed("127.0.0.1", directory)


def client_context(cafile: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cafile))


def add_user(v: Volley, user: str, password: str) -> None:
    """`volley passwd USER --config FILE` with the password on stdin, as an admin runs it."""
    v.write_config()
    got = subprocess.run(
        [sys.executable, "-m", "engine", "passwd", user, "--config", str(v.config_path)],
        input=password + "\n",
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert got.returncode == 0, got.stderr


class RawSession:
    """A blocking SMTP client that sends exactly the bytes it is given."""

    def __init__(
        self, port: int, host: str = "127.0.0.1", timeout: float = 10.0, source: str = ""
    ) -> None:
        """`source`: the client's own address (e.g. 127.0.0.2, outside relay_networks)."""
        self.sock = socket.create_connection(
            (host, port), timeout=timeout, source_address=(source, 0) if source else None
        )
        self._buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def reply(self) -> bytes:
        """One whole reply (all its lines); b"" once the server has closed."""
        out = b""
        while True:
            nl = self._buf.find(b"\r\n")
            if nl < 0:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return out
                self._buf += chunk
                continue
            line, self._buf = self._buf[: nl + 2], self._buf[nl + 2 :]
            out += line
            if line[3:4] != b"-":
                return out

    def cmd(self, line: bytes) -> bytes:
        self.send(line + b"\r\n")
        return self.reply()

    def closed(self) -> bool:
        """True once the server closed the connection (reads EOF)."""
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
