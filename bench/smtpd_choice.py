"""`python -m bench.smtpd_choice`: aiosmtpd against a minimal hand-written listener.

Responsible for: answering issue #13's "measure whether aiosmtpd can reach 3 000 msg/s
before choosing it": the same load (Postfix's C `smtp-source`, 20 sessions, the bench's
5 KB message) into one server process (uvloop) that makes every message durable before
its 250 the same way for both contenders — appended to one file, fsynced, in batches
(group commit: everything that finished DATA while the previous fsync ran goes into the
next one) — and the server process's CPU per message (/proc utime + stime).
Not responsible for: Volley's real listener (engine.smtpd; `make bench` measures it in
its listener phase), or judging: it prints one JSON line per contender.

Contenders:
  * `aiosmtpd`: aiosmtpd's `SMTP` with a `handle_DATA` that awaits the group commit;
  * `minimal`: an asyncio.Protocol that parses commands with `bytes.find` and finds the
    end of DATA with one search for CRLF.CRLF (no per-line work), replies to a pipelined
    group with one write — the shape engine.smtpd's sans-IO protocol takes.
Each runs in a fresh process started here (`--serve KIND PORT DIR`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, cast

from bench.measure import CLK_TCK, read_stat
from bench.sinks import find_tool, wait_listening
from bench.workload import Spec, generate
from tests.support.net import free_port

__all__ = ["main"]


class GroupCommit:
    """Durable appends: callers await `commit(data)`; one write + fsync per batch."""

    def __init__(self, path: Path) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._pending: list[tuple[bytes, asyncio.Future[None]]] = []
        self._busy = False
        self.batches = 0

    async def commit(self, data: bytes) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((data, fut))
        if not self._busy:
            self._busy = True
            asyncio.get_running_loop().call_soon(self._start)
        await fut

    def _start(self) -> None:
        batch, self._pending = self._pending, []
        loop = asyncio.get_running_loop()
        task = loop.run_in_executor(None, self._write, [d for d, _ in batch])
        task.add_done_callback(lambda _t: self._done(batch))

    def _write(self, items: list[bytes]) -> None:
        os.write(self._fd, b"".join(items))
        os.fsync(self._fd)

    def _done(self, batch: list[tuple[bytes, asyncio.Future[None]]]) -> None:
        self.batches += 1
        for _, f in batch:
            if not f.done():
                f.set_result(None)
        if self._pending:
            self._start()
        else:
            self._busy = False


class Minimal(asyncio.Protocol):
    """Just enough ESMTP for smtp-source: EHLO, MAIL, RCPT, DATA, RSET, NOOP, QUIT."""

    def __init__(self, store: GroupCommit) -> None:
        self.store = store
        self.buf = bytearray()
        self.in_data = False
        self.rcpts = 0
        self.t: asyncio.Transport | None = None
        self.tasks: set[asyncio.Future[None]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.t = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        transport.write(b"220 bench ESMTP\r\n")

    def data_received(self, data: bytes) -> None:
        self.buf += data
        out: list[bytes] = []
        while True:
            if self.in_data:
                end = self.buf.find(b"\r\n.\r\n")
                if end < 0:
                    break
                body = bytes(self.buf[2 : end + 2])  # without the CRLF put in front
                del self.buf[: end + 5]
                self.in_data = False
                task = asyncio.ensure_future(self._commit(body))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
                continue
            nl = self.buf.find(b"\r\n")
            if nl < 0:
                break
            line = bytes(self.buf[:nl])
            del self.buf[: nl + 2]
            verb = line[:4].upper()
            if verb == b"EHLO":
                out.append(b"250-bench\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 52428800\r\n")
            elif verb in (b"MAIL", b"RSET", b"NOOP", b"HELO"):
                self.rcpts = 0
                out.append(b"250 2.0.0 OK\r\n")
            elif verb == b"RCPT":
                self.rcpts += 1
                out.append(b"250 2.1.5 OK\r\n")
            elif verb == b"DATA":
                out.append(b"354 go\r\n")
                self.in_data = True
                # What the client sent after DATA is message text: reparse it as such.
                self.buf[0:0] = b"\r\n"
            elif verb == b"QUIT":
                out.append(b"221 2.0.0 bye\r\n")
                assert self.t is not None
                self.t.write(b"".join(out))
                self.t.close()
                return
            else:
                out.append(b"502 5.5.2 no\r\n")
        if out and self.t is not None:
            self.t.write(b"".join(out))

    async def _commit(self, body: bytes) -> None:
        await self.store.commit(body)
        if self.t is not None and not self.t.is_closing():
            self.t.write(b"250 2.0.0 queued\r\n")


async def serve_minimal(port: int, store: GroupCommit) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Minimal(store), "127.0.0.1", port, backlog=128)
    async with server:
        await server.serve_forever()


async def serve_aiosmtpd(port: int, store: GroupCommit) -> None:
    from aiosmtpd.smtp import SMTP

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            await store.commit(envelope.original_content)
            return "250 2.0.0 queued"

    loop = asyncio.get_running_loop()
    handler = Handler()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="bench", enable_SMTPUTF8=True),
        "127.0.0.1",
        port,
        backlog=128,
    )
    async with server:
        await server.serve_forever()


def serve(kind: str, port: int, directory: Path) -> None:
    import uvloop

    store_path = directory / f"{kind}.store"

    async def main() -> None:
        store = GroupCommit(store_path)
        if kind == "aiosmtpd":
            await serve_aiosmtpd(port, store)
        else:
            await serve_minimal(port, store)

    uvloop.run(main())


def measure(kind: str, n: int, sessions: int, directory: Path, message: Path) -> dict[str, Any]:
    port = free_port(["127.0.0.1"])
    server = subprocess.Popen(
        [sys.executable, "-m", "bench.smtpd_choice", "--serve", kind, str(port), str(directory)],
        start_new_session=True,
    )
    try:
        wait_listening("127.0.0.1", port, 20)
        stat0 = read_stat(server.pid)
        assert stat0 is not None
        t0 = time.monotonic()
        args = [find_tool("smtp-source"), "-d", "-s", str(sessions), "-m", str(n)]
        args += ["-F", str(message), "-f", "news@sender.test", "-t", "rcpt@dom001.test"]
        subprocess.run(
            [*args, "-M", "client.test", f"127.0.0.1:{port}"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        wall = time.monotonic() - t0
        stat1 = read_stat(server.pid)
        assert stat1 is not None
    finally:
        server.kill()
        server.wait()
    cpu = (stat1.own - stat0.own) / CLK_TCK
    return {
        "server": kind,
        "messages": n,
        "sessions": sessions,
        "wall_s": round(wall, 3),
        "msgs_per_s": round(n / wall, 1),
        "server_cpu_us_per_msg": round(cpu / n * 1e6, 1),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.smtpd_choice")
    p.add_argument("--messages", type=int, default=20_000)
    p.add_argument("--sessions", type=int, default=20)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--serve", nargs=3, metavar=("KIND", "PORT", "DIR"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve:
        serve(args.serve[0], int(args.serve[1]), Path(args.serve[2]))
        return 0
    sample = next(iter(generate(Spec(messages=1))))
    with tempfile.TemporaryDirectory(prefix="volley-smtpd-choice-") as tmp:
        directory = Path(tmp)
        message = directory / "message.txt"
        message.write_bytes(sample.data.replace(b"\r\n", b"\n"))
        for _ in range(args.rounds):
            for kind in ("aiosmtpd", "minimal"):
                res = measure(kind, args.messages, args.sessions, directory, message)
                print(json.dumps(res), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
