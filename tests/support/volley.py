"""Run the real `volley run` process in tests, drop messages into it, read its log.

Responsible for: writing a TOML config (spool, log, DNS and SMTP port of the mini
internet, short timeouts), starting/stopping the process, producing drop files the way
a real producer does (write ".name.tmp", then rename), and reading the delivery log.
Not responsible for: the destination side (tests.support.internet).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from engine.telemetry.eventlog import read_log
from spool import decode, read_shard
from spool.scan import LiveEntry
from spool.segment import segment_name
from tests.support.net import free_port, wait_for

REPO = Path(__file__).resolve().parents[2]
# The installed console script, as every shipped deployment runs it (systemd, Dockerfile).
VOLLEY_SCRIPT = str(Path(sys.executable).parent / "volley")
PYTHON_M_ENGINE = (sys.executable, "-m", "engine")


def to_toml(data: Mapping[str, Any], prefix: str = "") -> str:
    """A tiny TOML writer for test configs (scalars, lists, inline tables in lists, nested
    tables)."""
    lines: list[str] = []
    tables: list[tuple[str, Mapping[str, Any]]] = []
    for key, value in data.items():
        qkey = key if key.replace("_", "").replace("-", "").isalnum() else f'"{key}"'
        if isinstance(value, Mapping):
            tables.append((f"{prefix}.{qkey}" if prefix else qkey, value))
        else:
            lines.append(f"{qkey} = {_toml_value(value)}")
    out = "\n".join(lines) + "\n"
    for name, table in tables:
        out += f"\n[{name}]\n" + to_toml(table, name)
    return out


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, Mapping):  # an inline table (only inside a list: see to_toml)
        return "{" + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"cannot write {v!r} as TOML")


def merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    for k, v in extra.items():
        if isinstance(v, Mapping) and isinstance(base.get(k), dict):
            merge(base[k], v)
        else:
            base[k] = v
    return base


class Volley:
    """One `volley run` process with its own spool under `root`."""

    def __init__(
        self,
        root: Path,
        *,
        dns: str,
        smtp_port: int,
        workers: int = 2,
        config: Mapping[str, Any] | None = None,
        command: Sequence[str] = PYTHON_M_ENGINE,
        cwd: Path | None = None,
        pythonpath: bool = True,
    ) -> None:
        """`command` is what runs `volley` (then "run --config FILE" follows), started in
        `cwd` (default `root`, which holds spool/ as systemd's working directory does);
        `pythonpath` puts the repository on PYTHONPATH (not needed for VOLLEY_SCRIPT)."""
        self.root = root
        self.command = list(command)
        self.cwd = cwd or root
        self.pythonpath = pythonpath
        self.spool = root / "spool"
        self.log_path = root / "delivery.jsonl"
        self.metrics_port = free_port(["127.0.0.1"])
        self.admin_port = free_port(["127.0.0.1"])
        self.config: dict[str, Any] = {
            "workers": workers,
            "spool": {"path": str(self.spool)},
            "intake": {"interval": "20ms"},
            "dns": {"nameservers": [dns], "timeout": "2s", "negative_ttl": "1s"},
            "smtp": {
                "port": smtp_port,
                "helo_name": "volley.test",
                "idle_timeout": "1s",
                # The mini internet's MX hosts are on 127.0.0.x, which Volley refuses by
                # default (smtp.ignore_target_hosts): allow them.
                "ignore_target_hosts": [],
                "timeouts": {
                    "connect": "3s",
                    "greeting": "5s",
                    "ehlo": "5s",
                    "mail": "5s",
                    "rcpt": "5s",
                    "data": "5s",
                    "data_block": "5s",
                    "data_done": "10s",
                },
            },
            "metrics": {"listen": f"127.0.0.1:{self.metrics_port}"},
            "admin": {"listen": f"127.0.0.1:{self.admin_port}"},
            # Off unless a scenario turns it on (the default port would clash between runs).
            "smtpd": {"listen": []},
            "log": {"path": str(self.log_path)},
            "shutdown": {"drain_timeout": "5s"},
            # A bounce report waits this long for its message's other failures (30 s by
            # default): short, so scenarios see their DSNs at once.
            "dsn": {"hold": "300ms"},
            "domains": {"default": {"retry_schedule": ["300ms", "600ms"], "retry_jitter": 0.0}},
        }
        merge(self.config, config or {})
        self.config_path = root / "volley.toml"
        self.proc: subprocess.Popen[bytes] | None = None
        self.output = root / "volley.out"
        self._drops = 0

    # -- process -------------------------------------------------------------------------
    def write_config(self) -> Path:
        """Write `config` as the instance's TOML file (start() does it too)."""
        self.config_path.write_text(to_toml(self.config))
        return self.config_path

    def start(self, timeout: float = 20.0) -> Volley:
        """Start `volley run` and wait (up to `timeout` s) until it says "running": after
        every worker's start-up scan, which a big queue makes long (bench scale mode)."""
        self.write_config()
        (self.spool / "incoming").mkdir(parents=True, exist_ok=True)
        out = open(self.output, "ab")
        env = dict(os.environ)
        if self.pythonpath:
            env["PYTHONPATH"] = str(REPO)
        else:
            env.pop("PYTHONPATH", None)
        self.proc = subprocess.Popen(
            [*self.command, "run", "--config", str(self.config_path)],
            cwd=self.cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
        out.close()
        wait_for(
            lambda: b"running" in self.output.read_bytes() or self.proc.poll() is not None,  # type: ignore[union-attr]
            timeout=timeout,
            message=lambda: f"volley did not start:\n{self.output.read_text(errors='replace')}",
        )
        assert self.proc.poll() is None, self.output.read_text(errors="replace")
        return self

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, wait for the drain; returns the exit status."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"volley did not stop within {timeout}s:\n{self.text_output()}"
            ) from None

    def kill(self) -> None:
        """SIGKILL the supervisor and every worker (they run in their own sessions)."""
        if self.proc is None:
            return
        pids = [*_children(self.proc.pid), self.proc.pid]
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(10)
        # The workers are the supervisor's children, reaped by nobody now: wait until
        # each is gone or a zombie (its sockets closed), so a restart right away finds
        # the listener's port free (seen once in CI: "Address already in use").
        wait_for(lambda: all(_dead(pid) for pid in pids), timeout=10)

    def cli(
        self, *args: str, config: Path | None = None, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        """Run `volley ARGS --config <this instance's config (or `config`)>`."""
        cfg = config or self.config_path
        return subprocess.run(
            [sys.executable, "-m", "engine", *args, "--config", str(cfg)],
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )

    def cli_json(self, *args: str) -> Any:
        """`cli(..., "--json")`, which must succeed; its decoded output."""
        got = self.cli(*args, "--json")
        assert got.returncode == 0, f"volley {' '.join(args)}: {got.returncode}\n{got.stderr}"
        return json.loads(got.stdout)

    def text_output(self) -> str:
        return self.output.read_text(errors="replace") if self.output.exists() else ""

    def __enter__(self) -> Volley:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.stop()
            except AssertionError:
                pass

    # -- producer side ------------------------------------------------------------------
    def drop(self, data: bytes, name: str | None = None) -> str:
        """Write a drop file the safe way: ".name.tmp", then rename to "name"."""
        self._drops += 1
        name = name or f"msg-{self._drops:06d}.eml"
        incoming = self.spool / "incoming"
        tmp = incoming / f".{name}.tmp"
        tmp.write_bytes(data)
        os.rename(tmp, incoming / name)
        return name

    def incoming(self) -> list[str]:
        return sorted(p.name for p in (self.spool / "incoming").iterdir())

    def queued(self) -> list[str]:
        """Names of the live entries of every queue/<k>, from the segment indexes."""
        return sorted(e.name for _, e in live_entries(self.spool))

    def entry(self, name: str) -> tuple[dict[str, Any], bytes]:
        """A live entry's meta and body, read from its segment (KeyError if not live)."""
        return read_entry(self.spool, name)

    # -- the delivery log ------------------------------------------------------------------
    def log(self) -> list[dict[str, Any]]:
        return list(read_log(self.log_path)) if self.log_path.exists() else []

    def events(self, event: str) -> Iterator[dict[str, Any]]:
        return (r for r in self.log() if r["event"] == event)

    def count(self, event: str) -> int:
        return sum(1 for _ in self.events(event))


def live_entries(spool: Path) -> list[tuple[Path, LiveEntry]]:
    """(queue/<k> directory, entry) for every live entry of a spool (read-only)."""
    q = spool / "queue"
    dirs = sorted(d for d in q.iterdir() if d.is_dir()) if q.exists() else []
    return [(d, e) for d in dirs for e in read_shard(d).live]


def read_entry(spool: Path, name: str) -> tuple[dict[str, Any], bytes]:
    """Decode one live entry's record straight from its segment (raises CorruptEntry)."""
    for d, e in live_entries(spool):
        if e.name == name:
            return decode_live(d, e)
    raise KeyError(name)


def decode_live(directory: Path, e: LiveEntry) -> tuple[dict[str, Any], bytes]:
    """Decode a live entry found by `live_entries` (raises CorruptEntry, or
    FileNotFoundError when its segment was unlinked meanwhile)."""
    with open(directory / segment_name(e.seq), "rb") as f:
        f.seek(e.offset)
        return decode(f.read(e.length))


def _dead(pid: int) -> bool:
    """Exited: no such process, or a zombie (its resources released)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def _children(pid: int) -> list[int]:
    """Every descendant pid of `pid` (workers run in their own sessions)."""
    out: list[int] = []
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return out
    for k in kids:
        out.append(int(k))
        out.extend(_children(int(k)))
    return out
