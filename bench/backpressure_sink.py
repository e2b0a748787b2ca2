"""Receivers that say no: the backpressure bench's SMTP sink, in a process of its own.

Responsible for: `BackpressureSinks`, one child process (`python -m bench.backpressure_sink`)
listening on every given 127.0.0.x address, whose replies follow a seeded `Decider`
(bench.backpressure_mix): a 421 instead of the greeting, refusals at RCPT or end of data,
end-of-data replies held a few seconds; `554 5.5.1` to a DATA with no accepted recipient
(RFC 2920); replies kept in command order for pipelining clients.  It counts what it did
and returns the counts (`stop()`): connections, refusals by code, slow replies, messages
accepted and when, recipients accepted twice.
Not responsible for: the mix or its decisions (bench.backpressure_mix), running the
engines (bench.backpressure), or speed: a Python receiver, so it runs in its own process
(not in the bench's, whose DNS server Postfix asks twice per delivery) and its CPU is not
counted against either engine.

The child stops when its stdin closes (the bench's exit, even a crash, closes it), then
prints its counts as one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from collections import Counter, deque
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, cast

from bench.backpressure_mix import Decider, Mix, parse_mix

__all__ = ["BackpressureSinks"]

REPO = Path(__file__).resolve().parents[1]
_START_TIMEOUT = 30.0
_STOP_TIMEOUT = 30.0
_EHLO = (
    b"250-{name}\r\n250-PIPELINING\r\n250-SIZE 104857600\r\n250-8BITMIME\r\n"
    b"250 ENHANCEDSTATUSCODES\r\n"
)
_NO_VALID = b"554 5.5.1 No valid recipients (bench)\r\n"


class _Counts:
    """What the receivers did, over all addresses (one event loop: no lock)."""

    def __init__(self) -> None:
        self.connections = 0
        self.refused_connections = 0
        self.transactions = 0
        self.refusals: Counter[str] = Counter()  # "451@rcpt" -> n
        self.slow = 0
        self.accepted = 0
        self.accept_times: list[float] = []  # time.time() of each accepted message
        self.accepted_rcpts: set[str] = set()
        self.accepted_twice = 0
        self.rcpt_attempts: Counter[str] = Counter()
        self.per_address: Counter[str] = Counter()  # connections per receiver address

    def as_dict(self) -> dict[str, Any]:
        return {
            "connections": self.connections,
            "refused_connections": self.refused_connections,
            "transactions": self.transactions,
            "refusals": dict(sorted(self.refusals.items())),
            "slow_replies": self.slow,
            "accepted": self.accepted,
            "accepted_twice": self.accepted_twice,
            "accept_times": [round(t, 3) for t in self.accept_times],
        }


class _Session(asyncio.Protocol):
    """One SMTP session: commands in order, replies in order, some of them late."""

    def __init__(self, server: _Server, address: str) -> None:
        self.server = server
        self.address = address
        self.loop = asyncio.get_running_loop()
        self.buf = bytearray()
        self.in_data = False
        self.rcpts: list[tuple[str, int]] = []  # accepted in this transaction: (rcpt, attempt)
        self.out: deque[tuple[float, bytes, bool]] = deque()  # (not before, bytes, close)
        self.timer: asyncio.TimerHandle | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        counts = self.server.counts
        counts.connections += 1
        counts.per_address[self.address] += 1
        refusal = self.server.decider.connect(self.address, counts.per_address[self.address])
        if refusal is not None:
            counts.refused_connections += 1
            counts.refusals[f"{refusal[:3].decode()}@connect"] += 1
            self.transport.write(refusal)
            self.transport.close()
            return
        self.transport.write(b"220 " + self.server.name + b" ESMTP backpressure-sink\r\n")

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while self.transport is not None:
            if self.in_data:
                end = self.buf.find(b"\r\n.\r\n")
                if end < 0:
                    return
                del self.buf[: end + 5]
                self.in_data = False
                self._end_of_data()
                continue
            nl = self.buf.find(b"\r\n")
            if nl < 0:
                return
            line = bytes(self.buf[:nl])
            del self.buf[: nl + 2]
            self._command(line)
            if self.in_data:
                self.buf[0:0] = b"\r\n"  # so an empty body's "." line is found too

    def _command(self, line: bytes) -> None:
        verb = line[:4].upper()
        server = self.server
        if verb in (b"EHLO", b"HELO"):
            self._reply(_EHLO.replace(b"{name}", server.name))
        elif verb == b"MAIL":
            server.counts.transactions += 1
            self.rcpts = []
            self._reply(b"250 2.1.0 Ok\r\n")
        elif verb == b"RCPT":
            start, end = line.find(b"<"), line.find(b">")
            rcpt = line[start + 1 : end].decode("utf-8", "replace").lower()
            attempts = server.counts.rcpt_attempts
            attempts[rcpt] += 1
            refusal = server.decider.rcpt(rcpt, attempts[rcpt])
            if refusal is not None:
                server.counts.refusals[f"{refusal[:3].decode()}@rcpt"] += 1
                self._reply(refusal)
            else:
                self.rcpts.append((rcpt, attempts[rcpt]))
                self._reply(b"250 2.1.5 Ok\r\n")
        elif verb == b"DATA":
            if not self.rcpts:
                self._reply(_NO_VALID)  # RFC 2920: no content follows
            else:
                self.in_data = True
                self._reply(b"354 End data with <CR><LF>.<CR><LF>\r\n")
        elif verb in (b"RSET", b"NOOP"):
            self.rcpts = []
            self._reply(b"250 2.0.0 Ok\r\n")
        elif verb == b"QUIT":
            self._reply(b"221 2.0.0 Bye\r\n", close=True)
        else:
            self._reply(b"502 5.5.2 Error: command not recognized\r\n")

    def _end_of_data(self) -> None:
        counts = self.server.counts
        rcpt, attempt = self.rcpts[0]
        refusal, delay = self.server.decider.data(rcpt, attempt)
        if delay:
            counts.slow += 1
        if refusal is not None:
            counts.refusals[f"{refusal[:3].decode()}@data"] += 1
            self._reply(refusal, delay=delay)
        else:
            counts.accepted += 1
            counts.accept_times.append(time.time())
            for r, _ in self.rcpts:
                if r in counts.accepted_rcpts:
                    counts.accepted_twice += 1
                counts.accepted_rcpts.add(r)
            self._reply(b"250 2.0.0 Ok: queued\r\n", delay=delay)
        self.rcpts = []

    def _reply(self, data: bytes, *, delay: float = 0.0, close: bool = False) -> None:
        """Queue a reply: no earlier than `delay` from now, and never before the ones
        queued ahead of it (a pipelining client matches replies by order)."""
        when = self.loop.time() + delay
        if self.out:
            when = max(when, self.out[-1][0])
        elif not delay and not close and self.transport is not None:
            self.transport.write(data)  # the common case: nothing held, no timer
            return
        self.out.append((when, data, close))
        if self.timer is None:
            self.timer = self.loop.call_at(self.out[0][0], self._pump)

    def _pump(self) -> None:
        self.timer = None
        now = self.loop.time()
        out = self.out
        while out and out[0][0] <= now:
            _, data, close = out.popleft()
            if self.transport is None:
                out.clear()
                return
            self.transport.write(data)
            if close:
                self.transport.close()
        if out:
            self.timer = self.loop.call_at(out[0][0], self._pump)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.timer is not None:
            self.timer.cancel()


class _Server:
    def __init__(self, mix: Mix, seed: int) -> None:
        self.decider = Decider(mix, seed)
        self.counts = _Counts()
        self.name = b"backpressure-sink"


async def _serve(ips: Sequence[str], port: int, mix: Mix, seed: int) -> _Counts:
    loop = asyncio.get_running_loop()
    server = _Server(mix, seed)
    listeners = [
        await loop.create_server(lambda ip=ip: _Session(server, ip), ip, port, backlog=1024)
        for ip in ips
    ]
    stop = asyncio.Event()
    loop.add_reader(sys.stdin.fileno(), lambda: stop.set() if not sys.stdin.read(1) else None)
    print("listening", flush=True)
    await stop.wait()
    for listener in listeners:
        listener.close()
    return server.counts


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="the backpressure bench's receivers (a child)")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--mix", required=True)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("ips", nargs="+")
    args = p.parse_args(argv)
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:  # the bench extra has it; plain asyncio only costs speed
        runner = asyncio.Runner()
    with runner:
        counts = runner.run(_serve(args.ips, args.port, parse_mix(args.mix), args.seed))
    print(json.dumps(counts.as_dict()), flush=True)
    return 0


class BackpressureSinks:
    """The child process: start, then `stop()` for its counts."""

    def __init__(self, ips: Sequence[str], port: int, mix: Mix, seed: int, workdir: Path) -> None:
        self.ips = list(ips)
        self.port = port
        self.mix = mix
        self.seed = seed
        self.workdir = workdir
        self._proc: subprocess.Popen[str] | None = None
        self._counts: dict[str, Any] | None = None

    def start(self) -> BackpressureSinks:
        self.workdir.mkdir(parents=True, exist_ok=True)
        args = [sys.executable, "-m", "bench.backpressure_sink", "--port", str(self.port)]
        args += ["--mix", self.mix.describe() or "", "--seed", str(self.seed), *self.ips]
        with open(self.workdir / "sink.err", "wb") as err:  # the child keeps its own copy
            self._proc = subprocess.Popen(
                args, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True
            )
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()  # blocks until it listens (or dies)
        if line.strip() != "listening":
            self.stop()
            err = (self.workdir / "sink.err").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"backpressure sink did not start: {line!r} {err}")
        return self

    def stop(self) -> dict[str, Any]:
        """Stop the child (close its stdin) and return its counts ({} if it died)."""
        proc = self._proc
        if proc is None:
            return self._counts or {}
        self._proc = None
        try:
            out, _ = proc.communicate(timeout=_STOP_TIMEOUT)  # closes its stdin: it stops
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        lines = [ln for ln in out.splitlines() if ln.startswith("{")]
        self._counts = json.loads(lines[-1]) if lines else {}
        return self._counts

    def __enter__(self) -> BackpressureSinks:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


if __name__ == "__main__":
    sys.exit(main())
